# closewatch: the service runs as the system user "closewatch", with only the
# capabilities closewatch.service grants it.
getent group closewatch >/dev/null || groupadd -r closewatch
getent passwd closewatch >/dev/null || \
    useradd -r -g closewatch -d / -s /sbin/nologin -c "closewatch agent" closewatch
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    # Enabled, not started: an RPM install does not start services.
    systemctl enable closewatch.service >/dev/null 2>&1 || :
fi
