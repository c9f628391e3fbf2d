//! Load for benches/tls.sh: `CLIENTS` scrapers GET /metrics from the agent at
//! once, over plain HTTP or TLS, with basic auth, and print the latency
//! percentiles; or time bcrypt itself (what every request would cost the
//! agent without its credential cache).
//!
//!   scrapers ADDR CLIENTS REQUESTS [--ca PEM] [--user U:P] [--fresh] [--wrong]
//!   scrapers --bcrypt PASSWORD HASH N
//!   scrapers --hash PASSWORD COST
//!
//! Each client keeps one connection alive, as Prometheus does, unless
//! `--fresh` (a connection, and with TLS a handshake, per request).
//! `--wrong` sends a distinct wrong password with every request. Output: one
//! line `requests=… failed=… status=CODE:N,… p50_ms=… p90_ms=… p99_ms=… max_ms=…`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

struct Options {
    addr: SocketAddr,
    clients: usize,
    requests: usize,
    tls: Option<Arc<rustls::ClientConfig>>,
    user: Option<String>,
    fresh: bool,
    wrong: bool,
}

fn tls_config(ca: &str) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("the CA file") {
        roots
            .add(cert.expect("a CA certificate"))
            .expect("add the CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn connect(o: &Options) -> std::io::Result<Box<dyn Stream>> {
    let tcp = TcpStream::connect_timeout(&o.addr, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    tcp.set_nodelay(true)?;
    match &o.tls {
        None => Ok(Box::new(tcp)),
        Some(config) => {
            let name = rustls::pki_types::ServerName::IpAddress(o.addr.ip().into());
            let conn = rustls::ClientConnection::new(config.clone(), name)
                .map_err(std::io::Error::other)?;
            Ok(Box::new(rustls::StreamOwned::new(conn, tcp)))
        }
    }
}

/// One request on `stream`; the status, with the whole body read.
fn get(stream: &mut Box<dyn Stream>, o: &Options, i: usize) -> std::io::Result<u16> {
    let auth = match (&o.user, o.wrong) {
        (Some(u), false) => Some(u.clone()),
        (Some(u), true) => Some(format!("{}:wrong-{i}", u.split(':').next().unwrap_or(u))),
        (None, _) => None,
    }
    .map(|c| {
        let encoded = base64::engine::general_purpose::STANDARD.encode(c);
        format!("Authorization: Basic {encoded}\r\n")
    })
    .unwrap_or_default();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {}\r\n{auth}Accept-Encoding: gzip\r\n\r\n",
        o.addr
    )?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line: {line:?}")))?;
    let mut length = 0usize;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(status)
}

fn client(o: &Options, next: &AtomicUsize) -> Vec<(Result<u16, String>, Duration)> {
    let mut out = Vec::new();
    let mut conn: Option<Box<dyn Stream>> = None;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= o.requests {
            return out;
        }
        let started = Instant::now();
        let result = (|| {
            if o.fresh || conn.is_none() {
                conn = Some(connect(o)?);
            }
            let stream = conn
                .as_mut()
                .ok_or_else(|| std::io::Error::other("no connection"))?;
            get(stream, o, i)
        })();
        if result.is_err() {
            conn = None;
        }
        out.push((result.map_err(|e| e.to_string()), started.elapsed()));
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn bcrypt_only(args: &[String]) {
    let [password, hash, n] = args else {
        panic!("--bcrypt PASSWORD HASH N")
    };
    let n: u32 = n.parse().expect("N");
    let started = Instant::now();
    for _ in 0..n {
        let _ = bcrypt::verify(password, hash);
    }
    let each = started.elapsed() / n;
    println!("bcrypt_each_ms={:.2} n={n}", each.as_secs_f64() * 1000.0);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--bcrypt") {
        return bcrypt_only(&args[1..]);
    }
    if let [flag, password, cost] = args.as_slice() {
        if flag == "--hash" {
            let cost = cost.parse().expect("COST");
            return println!("{}", bcrypt::hash(password, cost).expect("bcrypt"));
        }
    }
    let mut it = args.iter();
    let mut positional = Vec::new();
    let (mut tls, mut user, mut fresh, mut wrong) = (None, None, false, false);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--ca" => tls = Some(tls_config(it.next().expect("--ca PEM"))),
            "--user" => user = Some(it.next().expect("--user U:P").clone()),
            "--fresh" => fresh = true,
            "--wrong" => wrong = true,
            _ => positional.push(a.clone()),
        }
    }
    let [addr, clients, requests] = positional.as_slice() else {
        panic!("scrapers ADDR CLIENTS REQUESTS [--ca PEM] [--user U:P] [--fresh] [--wrong]")
    };
    let o = Arc::new(Options {
        addr: addr.parse().expect("ADDR"),
        clients: clients.parse().expect("CLIENTS"),
        requests: requests.parse().expect("REQUESTS"),
        tls,
        user,
        fresh,
        wrong,
    });
    let next = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..o.clients)
        .map(|_| {
            let (o, next) = (o.clone(), next.clone());
            std::thread::spawn(move || client(&o, &next))
        })
        .collect();
    let results: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("client thread"))
        .collect();
    let mut by_status = std::collections::BTreeMap::new();
    let mut failed = 0;
    let mut times: Vec<Duration> = Vec::new();
    for (r, t) in &results {
        match r {
            Ok(s) => *by_status.entry(*s).or_insert(0) += 1,
            Err(e) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("request failed: {e}");
                }
            }
        }
        times.push(*t);
    }
    times.sort();
    let status: Vec<String> = by_status.iter().map(|(s, n)| format!("{s}:{n}")).collect();
    println!(
        "requests={} failed={failed} status={} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        results.len(),
        status.join(","),
        percentile(&times, 50.0),
        percentile(&times, 90.0),
        percentile(&times, 99.0),
        percentile(&times, 100.0)
    );
}
