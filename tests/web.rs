//! The agent's endpoint as a Prometheus shop runs it: `--listen` in every
//! form node_exporter takes, and `--web-config` (TLS, basic auth) checked
//! with a real Prometheus, curl and raw sockets. Certificates come from the
//! openssl CLI, hashes from the bcrypt crate; nothing is hard-coded.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::agent::{free_port, request, tool, wait_for, Agent, Prometheus, Reaped};

const USER: &str = "prometheus";
const PASSWORD: &str = "correct horse battery staple";

fn empty_config() -> tempfile::NamedTempFile {
    tempfile::NamedTempFile::new().expect("config file")
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Files of `dir`, as openssl's arguments take them.
fn at(dir: &Path, file: &str) -> String {
    dir.join(file).display().to_string()
}

/// `openssl req`'s arguments for a new, unencrypted P-256 key.
const NEW_P256_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

/// A self-signed CA certificate `cert` with its key `key` (P-256), in `dir`.
fn self_signed(dir: &Path, key: &str, cert: &str, subject: &str) {
    run(Command::new("openssl")
        .args(["req", "-x509"])
        .args(NEW_P256_KEY)
        .args([
            "-keyout",
            &at(dir, key),
            "-out",
            &at(dir, cert),
            "-days",
            "2",
            "-subj",
            subject,
        ]));
}

/// A new key `key` and certificate `cert` for `subject` with the X.509 v3
/// extensions `ext` (openssl's syntax), signed by the CA `ca` (`ca_key`).
fn signed(dir: &Path, (ca, ca_key): (&str, &str), key: &str, cert: &str, subject: &str, ext: &str) {
    let (csr, ext_file) = (format!("{cert}.csr"), format!("{cert}.ext"));
    run(Command::new("openssl")
        .args(["req"])
        .args(NEW_P256_KEY)
        .args([
            "-keyout",
            &at(dir, key),
            "-out",
            &at(dir, &csr),
            "-subj",
            subject,
        ]));
    std::fs::write(dir.join(&ext_file), ext).expect("extensions file");
    run(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        &at(dir, &csr),
        "-CA",
        &at(dir, ca),
        "-CAkey",
        &at(dir, ca_key),
        "-CAcreateserial",
        "-out",
        &at(dir, cert),
        "-days",
        "2",
        "-extfile",
        &at(dir, &ext_file),
    ]));
}

/// A CA and a server certificate it signed for 127.0.0.1, ::1 and
/// localhost, in `dir`: `NAME-ca.pem`, `NAME.pem`, `NAME-key.pem`.
fn pki(dir: &Path, name: &str) {
    let (ca, ca_key) = (format!("{name}-ca.pem"), format!("{name}-ca-key.pem"));
    self_signed(dir, &ca_key, &ca, &format!("/CN=closewatch test CA {name}"));
    signed(
        dir,
        (&ca, &ca_key),
        &format!("{name}-key.pem"),
        &format!("{name}.pem"),
        "/CN=localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n",
    );
}

/// A web config with TLS from `pki(dir, name)` (relative paths, as the
/// toolkit resolves them) and one user.
fn web_config(dir: &Path, name: &str) -> PathBuf {
    let hash = bcrypt::hash(PASSWORD, 8).expect("bcrypt");
    let path = dir.join("web.yml");
    std::fs::write(
        &path,
        format!(
            "tls_server_config:\n  cert_file: {name}.pem\n  key_file: {name}-key.pem\n\
             http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n\
             basic_auth_users:\n  {USER}: {hash}\n"
        ),
    )
    .expect("web.yml");
    path
}

/// `curl` to the agent over TLS: (status, body); status 0 if curl failed.
fn curl(url: &str, ca: &Path, user: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "10",
        "-w",
        "\n%{http_code}",
        "--cacert",
    ])
    .arg(ca)
    .arg(url);
    if let Some(u) = user {
        cmd.args(["-u", u]);
    }
    let out = cmd.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn good() -> String {
    format!("{USER}:{PASSWORD}")
}

fn start_tls_agent(dir: &Path, name: &str, extra: &[&str]) -> Agent {
    pki(dir, name);
    let web = web_config(dir, name);
    let config = dir.join("closewatch.toml");
    std::fs::write(&config, "").expect("config");
    let mut args = vec!["--interval", "1s", "--web-config"];
    let web = web.display().to_string();
    args.push(&web);
    args.extend_from_slice(extra);
    Agent::start(&config, &args)
}

/// The CPU time (user + system) the process has used.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = stat.rsplit_once(')').expect("comm").1;
    let f: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|v| v.parse().expect("ticks"))
        .collect();
    // SAFETY: sysconf reads a constant.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).expect("hz");
    Duration::from_millis((f[0] + f[1]) * 1000 / hz)
}

#[test]
fn https_with_basic_auth_refuses_what_it_should() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = start_tls_agent(dir.path(), "a", &[]);
    let ca = dir.path().join("a-ca.pem");
    let url = format!("https://{}/metrics", agent.addr);
    let (status, body) = wait_for(Duration::from_secs(60), || {
        Some(curl(&url, &ca, Some(&good()))).filter(|(s, _)| *s == 200)
    })
    .expect("200 with the right password");
    assert!(body.contains("closewatch_scans_total"), "{body}");
    assert_eq!(status, 200);
    assert_eq!(curl(&url, &ca, None).0, 401, "no credentials");
    assert_eq!(
        curl(&url, &ca, Some(&format!("{USER}:wrong"))).0,
        401,
        "wrong password"
    );
    assert_eq!(
        curl(&url, &ca, Some(&format!("nobody:{PASSWORD}"))).0,
        401,
        "unknown user"
    );
    // /healthz is for probes, which carry no credentials.
    let healthz = format!("https://{}/healthz", agent.addr);
    assert_eq!(curl(&healthz, &ca, None).0, 200);
    // Plain HTTP on the TLS port: a 400 that says why, and no metrics.
    let r = request(agent.addr, "GET", "/metrics").expect("an answer");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(!r.body.contains("closewatch_"), "{}", r.body);
    // The certificate is checked against the test's CA, not waved through.
    let other = tempfile::tempdir().expect("tempdir");
    pki(other.path(), "x");
    assert_eq!(
        curl(&url, &other.path().join("x-ca.pem"), Some(&good())).0,
        0
    );
}

#[test]
fn a_real_prometheus_scrapes_over_tls_with_basic_auth() {
    if !tool("prometheus", "prometheus") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = start_tls_agent(dir.path(), "a", &[]);
    let ca = dir.path().join("a-ca.pem");
    let job = |name: &str, auth: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: {}\n{auth}    static_configs:\n      - targets: ['{}']\n",
            ca.display(),
            agent.addr
        )
    };
    let prometheus = Prometheus::start(&format!(
        "{}{}{}",
        job(
            "good",
            &format!("    basic_auth:\n      username: {USER}\n      password: '{PASSWORD}'\n")
        ),
        job("none", ""),
        job(
            "wrong",
            &format!("    basic_auth:\n      username: {USER}\n      password: nope\n")
        ),
    ));
    let query = |q: &str| prometheus.first(q);
    let scans = wait_for(Duration::from_secs(90), || {
        query("closewatch_scans_total%7Bjob%3D%22good%22%7D")
    })
    .expect("Prometheus has a closewatch series through TLS and basic auth");
    assert_eq!(scans["metric"]["job"], "good");
    // The other two jobs' scrapes fail: `up` is 0 and they have no series.
    for job in ["none", "wrong"] {
        let up = wait_for(Duration::from_secs(30), || {
            query(&format!("up%7Bjob%3D%22{job}%22%7D"))
        })
        .expect("up");
        assert_eq!(up["value"][1], "0", "job {job}: {up}");
        assert!(query(&format!("closewatch_scans_total%7Bjob%3D%22{job}%22%7D")).is_none());
    }
    // And why: Prometheus's own view of the target says 401.
    let targets = request(prometheus.addr, "GET", "/api/v1/targets").expect("targets");
    let v: serde_json::Value = serde_json::from_str(&targets.body).expect("json");
    let errors: Vec<String> = v["data"]["activeTargets"]
        .as_array()
        .expect("targets")
        .iter()
        .filter(|t| t["labels"]["job"] != "good")
        .map(|t| t["lastError"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(errors.len(), 2);
    for e in &errors {
        assert!(e.contains("401"), "{errors:?}");
    }
}

/// Opens `n` connections that each send `bytes` and then stall.
fn stalled(addr: SocketAddr, n: usize, bytes: &[u8]) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|_| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
            let _ = s.write_all(bytes);
            Some(s)
        })
        .collect()
}

/// A TLS client trusting `ca` only.
fn tls_client(ca: &Path) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("ca") {
        roots.add(cert.expect("ca cert")).expect("add ca");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// One GET over TLS with basic auth `user:password`: the status, or the
/// error that kept it from one.
fn tls_get(
    addr: SocketAddr,
    client: &std::sync::Arc<rustls::ClientConfig>,
    credentials: &str,
) -> Result<u16, String> {
    use base64::Engine;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(client.clone(), name).map_err(|e| e.to_string())?;
    let tcp =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let auth = base64::engine::general_purpose::STANDARD.encode(credentials);
    write!(
        tls,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    if let Err(e) = tls.read_to_end(&mut raw) {
        if raw.is_empty() {
            return Err(e.to_string());
        }
    }
    let text = String::from_utf8_lossy(&raw);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {text:?}"))
}

/// `n` requests with distinct wrong passwords from `threads` clients at
/// once: the status (or error) of each.
fn storm(addr: SocketAddr, ca: &Path, n: usize, threads: usize) -> Vec<Result<u16, String>> {
    let client = tls_client(ca);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (client, next) = (client.clone(), next.clone());
            std::thread::spawn(move || {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return out;
                    }
                    out.push(tls_get(addr, &client, &format!("{USER}:wrong-{i}")));
                }
            })
        })
        .collect();
    workers
        .into_iter()
        .flat_map(|w| w.join().expect("storm thread"))
        .collect()
}

#[test]
fn abuse_on_the_tls_port_never_costs_a_good_scraper_a_scrape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = start_tls_agent(dir.path(), "a", &[]);
    let ca = dir.path().join("a-ca.pem");
    let url = format!("https://{}/metrics", agent.addr);
    wait_for(Duration::from_secs(60), || {
        Some(curl(&url, &ca, Some(&good())).0).filter(|s| *s == 200)
    })
    .expect("the good scraper's first scrape");
    let before = cpu(agent.pid());
    let started = Instant::now();
    // 300 handshakes that never finish, garbage, plain HTTP.
    let mut held = stalled(agent.addr, 300, &[0x16, 0x03, 0x01]);
    held.extend(stalled(agent.addr, 50, b"\x00\xff garbage \x01\x02"));
    held.extend(stalled(agent.addr, 50, b"GET /metrics HTTP/1.1\r\n\r\n"));
    let storm = {
        let ca = ca.clone();
        let addr = agent.addr;
        std::thread::spawn(move || storm(addr, &ca, 1000, 50))
    };
    let mut good_scrapes = Vec::new();
    while good_scrapes.len() < 20 || !storm.is_finished() {
        good_scrapes.push(curl(&url, &ca, Some(&good())).0);
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "storm never ended"
        );
    }
    let answers = storm.join().expect("storm");
    let storm_cpu = cpu(agent.pid()).saturating_sub(before);
    let (mut denied, mut throttled) = (0, 0);
    for answer in &answers {
        match answer {
            Ok(401) => denied += 1,
            Ok(429) => throttled += 1,
            other => panic!("a wrong password got {other:?}"),
        }
    }
    eprintln!(
        "storm: {denied} answered 401, {throttled} 429, {} good scrapes, agent CPU {storm_cpu:?} \
         over {:?}",
        good_scrapes.len(),
        started.elapsed()
    );
    assert_eq!(denied + throttled, 1000);
    assert!(
        good_scrapes.iter().all(|s| *s == 200),
        "the good scraper: {good_scrapes:?}"
    );
    drop(held);
    // The agent counts what it refused (as of its next scan).
    let sample = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(-1.0)
    };
    let counted = wait_for(Duration::from_secs(30), || {
        let (_, text) = curl(&url, &ca, Some(&good()));
        let wrong = sample(
            &text,
            "closewatch_http_requests_refused_total{reason=\"wrong_credentials\"}",
        );
        let throttled = sample(
            &text,
            "closewatch_http_requests_refused_total{reason=\"auth_throttled\"}",
        );
        let handshakes = sample(&text, "closewatch_http_tls_handshake_failures_total");
        (wrong + throttled == 1000.0 && handshakes >= 400.0).then_some((wrong, handshakes))
    });
    assert!(
        counted.is_some_and(|(wrong, _)| wrong == f64::from(denied)),
        "refusals not counted as answered: {counted:?}"
    );
}

#[test]
fn a_reload_rotates_the_certificate_and_a_broken_file_keeps_the_old() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = start_tls_agent(dir.path(), "a", &[]);
    let url = format!("https://{}/metrics", agent.addr);
    let (ca_a, ca_b) = (dir.path().join("a-ca.pem"), dir.path().join("b-ca.pem"));
    wait_for(Duration::from_secs(60), || {
        Some(curl(&url, &ca_a, Some(&good())).0).filter(|s| *s == 200)
    })
    .expect("served with certificate a");
    let hup = || {
        // SAFETY: a signal to the agent this test started, by pid.
        let pid = libc::pid_t::try_from(agent.pid()).expect("pid");
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    };
    pki(dir.path(), "b");
    web_config(dir.path(), "b");
    hup();
    agent.wait_log("config reloaded", Duration::from_secs(30));
    assert_eq!(curl(&url, &ca_b, Some(&good())).0, 200, "rotated to b");
    assert_eq!(curl(&url, &ca_a, Some(&good())).0, 0, "a is gone");
    std::fs::write(
        dir.path().join("web.yml"),
        "tls_server_config:\n  cert_file: nope.pem\n",
    )
    .expect("break it");
    hup();
    agent.wait_log("config reload failed", Duration::from_secs(30));
    assert_eq!(curl(&url, &ca_b, Some(&good())).0, 200, "b stays");
}

#[test]
fn a_bad_web_config_stops_the_start_with_its_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = dir.path().join("web.yml");
    std::fs::write(&web, "basic_auth_users:\n  alice: not-a-hash\n").expect("web.yml");
    let out = Command::new(env!("CARGO_BIN_EXE_closewatch"))
        .args(["--listen", "127.0.0.1:0", "--web-config"])
        .arg(&web)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("web.yml") && err.contains("alice"), "{err}");
    let check = Command::new(env!("CARGO_BIN_EXE_closewatch"))
        .args(["--check-config", "--web-config"])
        .arg(&web)
        .output()
        .expect("run");
    assert_eq!(check.status.code(), Some(1), "--check-config checks it too");
}

#[test]
fn listen_on_a_port_answers_on_ipv4_and_ipv6_and_flags_add_up() {
    let free = || {
        std::net::TcpListener::bind("[::]:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port()
    };
    let (any, second) = (free(), free());
    let config = empty_config();
    let any_flag = format!(":{any}");
    let second_flag = format!("[::1]:{second}");
    let _agent = Agent::start(
        config.path(),
        &["--listen", &any_flag, "--listen", &second_flag],
    );
    for addr in [
        format!("127.0.0.1:{any}"),
        format!("[::1]:{any}"),
        format!("[::1]:{second}"),
    ] {
        let addr: SocketAddr = addr.parse().expect("addr");
        let r = wait_for(Duration::from_secs(30), || {
            request(addr, "GET", "/healthz").filter(|r| r.status == 200)
        });
        assert!(r.is_some(), "{addr} does not answer");
    }
    // [::1] is that address only.
    let v4: SocketAddr = format!("127.0.0.1:{second}").parse().expect("addr");
    assert!(request(v4, "GET", "/healthz").is_none());
}

#[test]
fn a_listen_address_by_name_is_resolved_at_start() {
    let config = empty_config();
    let agent = Agent::start(config.path(), &["--listen", "localhost:0"]);
    assert!(agent.addr.ip().is_loopback(), "{}", agent.addr);
    let r = wait_for(Duration::from_secs(30), || {
        agent.request("GET", "/healthz").filter(|r| r.status == 200)
    });
    assert!(r.is_some());
}

/// The shipped example, with certificates where it expects them: promtool
/// accepts it, closewatch loads it, and its documented password works.
#[test]
fn the_shipped_web_config_example_is_valid_for_promtool_and_for_us() {
    let dir = tempfile::tempdir().expect("tempdir");
    pki(dir.path(), "s");
    std::fs::copy(dir.path().join("s.pem"), dir.path().join("closewatch.crt")).expect("crt");
    std::fs::copy(
        dir.path().join("s-key.pem"),
        dir.path().join("closewatch.key"),
    )
    .expect("key");
    let web = dir.path().join("web-config.yml");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/web-config.yml"),
        &web,
    )
    .expect("copy the example");
    if tool("promtool", "prometheus") {
        let out = Command::new("promtool")
            .arg("check")
            .arg("web-config")
            .arg(&web)
            .output()
            .expect("promtool");
        assert!(
            out.status.success(),
            "promtool check web-config: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let config = empty_config();
    let web_flag = web.display().to_string();
    let agent = Agent::start(config.path(), &["--web-config", &web_flag]);
    let url = format!("https://{}/metrics", agent.addr);
    let ca = dir.path().join("s-ca.pem");
    let status = wait_for(Duration::from_secs(60), || {
        Some(curl(&url, &ca, Some("prometheus:change-me")).0).filter(|s| *s != 503)
    });
    assert_eq!(status, Some(200), "the example's documented password");
    let r = Command::new("curl")
        .args(["-sS", "-D", "-", "-o", "/dev/null", "--cacert"])
        .arg(&ca)
        .args(["-u", "prometheus:change-me", &url])
        .output()
        .expect("curl");
    let head = String::from_utf8_lossy(&r.stdout).to_ascii_lowercase();
    assert!(
        head.contains("strict-transport-security: max-age=31536000"),
        "{head}"
    );
}

/// Socket activation as systemd does it, by systemd's own tool: the agent
/// serves on the socket it is given (and binds nothing itself).
#[test]
fn the_agent_serves_on_a_socket_systemd_passes() {
    if !tool("systemd-socket-activate", "systemd") {
        return;
    }
    let port = free_port();
    let config = empty_config();
    let child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(format!("127.0.0.1:{port}"))
        .arg(env!("CARGO_BIN_EXE_closewatch"))
        .arg("-c")
        .arg(config.path())
        .args([
            "--web-systemd-socket",
            "--interval",
            "1s",
            "--listen",
            "127.0.0.1:1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate");
    // By pid: the tool execs the agent in place.
    let mut child = Reaped(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    // The first connection is what starts the agent.
    let r = wait_for(Duration::from_secs(60), || {
        request(addr, "GET", "/healthz").filter(|r| r.status == 200)
    });
    assert!(r.is_some(), "no answer on the passed socket");
    let stderr = child.0.stderr.take().expect("stderr");
    let _ = child.0.kill();
    let _ = child.0.wait();
    let mut log = String::new();
    let _ = std::io::BufReader::new(stderr).read_to_string(&mut log);
    assert!(
        log.contains(&format!("listening on http://127.0.0.1:{port}/metrics")),
        "{log}"
    );
    assert!(
        !log.contains("127.0.0.1:1/"),
        "--listen is not bound: {log}"
    );
}

/// A client CA in `dir`: `CA-clients-ca.pem` and its key.
fn client_ca(dir: &Path, ca: &str) {
    let (cert, key) = (
        format!("{ca}-clients-ca.pem"),
        format!("{ca}-clients-ca-key.pem"),
    );
    self_signed(dir, &key, &cert, "/CN=clients CA");
}

/// A client certificate with subject alternative names `sans` (openssl's
/// syntax), signed by `client_ca(dir, ca)`: `NAME-client.pem`, `NAME-client-key.pem`.
fn client_cert(dir: &Path, ca: &str, name: &str, sans: &str) {
    let (ca_cert, ca_key) = (
        format!("{ca}-clients-ca.pem"),
        format!("{ca}-clients-ca-key.pem"),
    );
    signed(
        dir,
        (&ca_cert, &ca_key),
        &format!("{name}-client-key.pem"),
        &format!("{name}-client.pem"),
        "/CN=prometheus",
        &format!("extendedKeyUsage=clientAuth\nsubjectAltName={sans}\n"),
    );
}

/// Starts an agent with TLS from `pki(dir, "a")` and these extra
/// `tls_server_config` lines; returns it with a GET by client certificate
/// (the status, 0 when there was no handshake).
fn mtls_agent(dir: &Path, extra: &str) -> (Agent, impl Fn(&str) -> u16) {
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        format!("tls_server_config:\n  cert_file: a.pem\n  key_file: a-key.pem\n{extra}"),
    )
    .expect("web.yml");
    let config = dir.join("closewatch.toml");
    std::fs::write(&config, "").expect("config");
    let web_flag = web.display().to_string();
    let agent = Agent::start(&config, &["--interval", "1s", "--web-config", &web_flag]);
    let url = format!("https://{}/metrics", agent.addr);
    let (dir, ca) = (dir.to_path_buf(), dir.join("a-ca.pem"));
    let get = move |name: &str| -> u16 {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
        ])
        .arg(&ca);
        if !name.is_empty() {
            cmd.arg("--cert")
                .arg(dir.join(format!("{name}-client.pem")))
                .arg("--key")
                .arg(dir.join(format!("{name}-client-key.pem")));
        }
        let out = cmd.arg(&url).output().expect("curl");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    };
    (agent, get)
}

#[test]
fn client_certificates_are_required_and_verified_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    pki(dir.path(), "a");
    client_ca(dir.path(), "ours");
    client_ca(dir.path(), "theirs");
    client_cert(dir.path(), "ours", "good", "DNS:good.example");
    client_cert(dir.path(), "theirs", "foreign", "DNS:good.example");
    let (_agent, get) = mtls_agent(
        dir.path(),
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ours-clients-ca.pem\n",
    );
    let ok = wait_for(Duration::from_secs(60), || {
        Some(get("good")).filter(|s| *s == 200)
    });
    assert_eq!(ok, Some(200), "a certificate of the clients' CA");
    assert_eq!(
        get("foreign"),
        0,
        "a certificate of another CA: no handshake"
    );
    assert_eq!(get(""), 0, "no certificate: no handshake");
}

#[test]
fn client_allowed_sans_admits_only_certificates_that_name_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    pki(dir.path(), "a");
    client_ca(dir.path(), "ours");
    client_cert(dir.path(), "ours", "dns", "DNS:prometheus-0.example");
    client_cert(dir.path(), "ours", "ip", "IP:192.0.2.7");
    client_cert(
        dir.path(),
        "ours",
        "uri",
        "URI:spiffe://example.org/prometheus",
    );
    client_cert(
        dir.path(),
        "ours",
        "other",
        "DNS:grafana.example,IP:192.0.2.8",
    );
    let (_agent, get) = mtls_agent(
        dir.path(),
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ours-clients-ca.pem\n  \
         client_allowed_sans: [prometheus-0.example, 192.0.2.7, 'spiffe://example.org/prometheus']\n",
    );
    let ok = wait_for(Duration::from_secs(60), || {
        Some(get("dns")).filter(|s| *s == 200)
    });
    assert_eq!(ok, Some(200), "a DNS name allowed");
    assert_eq!(get("ip"), 200, "an IP address allowed");
    assert_eq!(get("uri"), 200, "a URI allowed");
    assert_eq!(get("other"), 0, "the same CA, other names: no handshake");
}
