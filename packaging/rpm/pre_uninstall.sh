# Last copy removed (not an upgrade): stop and disable the service.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now closewatch.service >/dev/null 2>&1 || :
fi
