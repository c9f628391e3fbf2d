//! The sock_diag requests encode byte for byte as the kernel accepted them, and
//! the receive loop, fed captured datagrams (tests/fixtures/sockdiag) with
//! faults injected by rewriting their headers, delivers each record of a clean
//! dump once, retries interrupted, truncated or cut-short dumps a bounded
//! number of times, tells kernel errors apart and falls back per family.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use super::replay::rewrite_headers;
use super::*;

const V4_REQUEST: &[u8] = include_bytes!("../../../tests/fixtures/sockdiag/v4/request.bin");
const V4_ALL_REQUEST: &[u8] = include_bytes!("../../../tests/fixtures/sockdiag/v4-all/request.bin");
const V4_DATAGRAM: &[u8] = include_bytes!("../../../tests/fixtures/sockdiag/v4/000.bin");
const V4_DONE: &[u8] = include_bytes!("../../../tests/fixtures/sockdiag/v4/001.bin");
const ANY_REQUEST: &[u8] =
    include_bytes!("../../../tests/fixtures/sockdiag/any-flagged/request.bin");
const ANY_DATAGRAM: &[u8] = include_bytes!("../../../tests/fixtures/sockdiag/any-flagged/000.bin");
const ANY_DONE: &[u8] = include_bytes!("../../../tests/fixtures/sockdiag/any-flagged/001.bin");
const BAD_FAMILY: &[u8] = include_bytes!("../../../tests/fixtures/sockdiag/errors/bad-family.bin");
const NO_HANDLER: &[u8] = include_bytes!("../../../tests/fixtures/sockdiag/errors/no-handler.bin");

/// A datagram with every message header's sequence number set to `seq`
/// and its flags OR-ed with `add_flags`.
fn rewrite(datagram: &[u8], seq: u32, add_flags: u16) -> Vec<u8> {
    let mut d = datagram.to_vec();
    rewrite_headers(&mut d, Some(seq), add_flags);
    d
}

/// A transport that replays datagrams and records what was sent.
struct Scripted {
    datagrams: VecDeque<Vec<u8>>,
    sent: Rc<RefCell<Vec<Vec<u8>>>>,
}

impl Transport for Scripted {
    fn send(&mut self, request: &[u8]) -> io::Result<()> {
        self.sent.borrow_mut().push(request.to_vec());
        Ok(())
    }

    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        buf.clear();
        let Some(d) = self.datagrams.pop_front() else {
            return Ok(0);
        };
        let n = d.len().min(buf.capacity());
        buf.extend_from_slice(&d[..n]);
        Ok(d.len())
    }
}

/// One script per connection attempt; counts the attempts.
struct Scripts {
    attempts: VecDeque<Vec<Vec<u8>>>,
    sent: Rc<RefCell<Vec<Vec<u8>>>>,
    connects: usize,
}

impl Scripts {
    fn new(attempts: Vec<Vec<Vec<u8>>>) -> Scripts {
        Scripts {
            attempts: attempts.into(),
            sent: Rc::default(),
            connects: 0,
        }
    }

    fn connect(&mut self) -> io::Result<Scripted> {
        self.connects += 1;
        Ok(Scripted {
            datagrams: self.attempts.pop_front().unwrap_or_default().into(),
            sent: self.sent.clone(),
        })
    }
}

fn flagged_v4() -> Request {
    Request {
        family: Family::V4,
        states: FLAGGED_STATES,
        tcp_info: true,
    }
}

fn sink() -> SocketSink {
    SocketSink {
        netns: NetnsId(1),
        sockets: Vec::new(),
    }
}

#[test]
fn requests_encode_exactly_as_captured() {
    // The captured requests were sent by this code: the test pins the wire
    // format (family, IPPROTO_TCP, INET_DIAG_INFO, the state mask, seq 1).
    let mut flagged = encode_request(&flagged_v4(), 1);
    let mut all = encode_request(
        &Request {
            family: Family::V4,
            states: ALL_STATES,
            tcp_info: false,
        },
        1,
    );
    // nlmsg_pid is 0 in both (the kernel fills the sender's port id).
    assert_eq!(flagged.len(), V4_REQUEST.len());
    flagged.truncate(V4_REQUEST.len());
    all.truncate(V4_ALL_REQUEST.len());
    assert_eq!(flagged, V4_REQUEST);
    assert_eq!(all, V4_ALL_REQUEST);
    // idiag_states after the header, family, protocol, ext and pad.
    assert_eq!(&V4_REQUEST[16..20], &[2, 6, 2, 0]);
    assert_eq!(&V4_REQUEST[20..24], &FLAGGED_STATES.to_ne_bytes());
    assert_eq!(&V4_ALL_REQUEST[20..24], &ALL_STATES.to_ne_bytes());
}

#[test]
fn the_combined_request_encodes_as_the_kernel_accepted_it() {
    // tests/fixtures/sockdiag/capture_any.py sent these bytes to the kernel
    // and recorded its answer: struct inet_diag_req, AF_UNSPEC.
    let req = encode_request(
        &Request {
            family: Family::Both,
            states: FLAGGED_STATES,
            tcp_info: true,
        },
        1,
    );
    assert_eq!(req, ANY_REQUEST);
    assert_eq!(&req[4..6], &TCPDIAG_GETSOCK.to_ne_bytes());
    assert_eq!(&req[16 + 52..16 + 56], &FLAGGED_STATES.to_ne_bytes());
}

#[test]
fn a_combined_dump_has_both_families_in_records_of_the_legacy_type() {
    let mut scripts = Scripts::new(vec![vec![ANY_DATAGRAM.to_vec(), ANY_DONE.to_vec()]]);
    let mut s = sink();
    let req = Request {
        family: Family::Both,
        states: FLAGGED_STATES,
        tcp_info: true,
    };
    dump(|| scripts.connect(), &req, &mut s).expect("dump");
    let kinds: Vec<u16> = parse::messages(ANY_DATAGRAM)
        .map(|m| m.expect("message").kind)
        .collect();
    assert!(kinds.iter().all(|&k| k == TCPDIAG_GETSOCK), "{kinds:?}");
    // One CLOSE_WAIT and one FIN_WAIT_2 per family, tcp_info on each.
    let mut seen: Vec<(bool, TcpState)> = s
        .sockets
        .iter()
        .map(|s| (s.local.is_ipv6(), s.state))
        .collect();
    seen.sort_by_key(|(v6, st)| (*v6, st.kernel_number()));
    assert_eq!(
        seen,
        vec![
            (false, TcpState::FinWait2),
            (false, TcpState::CloseWait),
            (true, TcpState::FinWait2),
            (true, TcpState::CloseWait),
        ]
    );
    assert!(s.sockets.iter().all(|s| s.info.is_some()));
}

#[test]
fn a_clean_dump_delivers_every_record_once() {
    let mut scripts = Scripts::new(vec![vec![V4_DATAGRAM.to_vec(), V4_DONE.to_vec()]]);
    let mut s = sink();
    dump(|| scripts.connect(), &flagged_v4(), &mut s).expect("dump");
    assert_eq!(s.sockets.len(), 4);
    assert_eq!(scripts.connects, 1);
    assert_eq!(scripts.sent.borrow().len(), 1);
}

#[test]
fn dump_intr_redoes_the_dump_and_keeps_only_the_clean_attempt() {
    let mut scripts = Scripts::new(vec![
        vec![rewrite(V4_DATAGRAM, 1, NLM_F_DUMP_INTR), V4_DONE.to_vec()],
        vec![rewrite(V4_DATAGRAM, 2, 0), rewrite(V4_DONE, 2, 0)],
    ]);
    let mut s = sink();
    dump(|| scripts.connect(), &flagged_v4(), &mut s).expect("dump");
    assert_eq!(scripts.connects, 2);
    assert_eq!(
        s.sockets.len(),
        4,
        "the interrupted attempt's records are dropped"
    );
}

#[test]
fn dump_intr_every_time_is_reported_after_the_bounded_retries() {
    let attempts = (1..=MAX_ATTEMPTS + 2)
        .map(|seq| {
            vec![
                rewrite(V4_DATAGRAM, seq, NLM_F_DUMP_INTR),
                rewrite(V4_DONE, seq, 0),
            ]
        })
        .collect();
    let mut scripts = Scripts::new(attempts);
    let mut s = sink();
    let err = dump(|| scripts.connect(), &flagged_v4(), &mut s).expect_err("interrupted");
    assert!(
        matches!(
            err,
            DumpError::Interrupted {
                attempts: MAX_ATTEMPTS
            }
        ),
        "{err}"
    );
    assert_eq!(scripts.connects, MAX_ATTEMPTS as usize);
}

#[test]
fn nlmsg_error_fails_without_retrying() {
    let mut scripts = Scripts::new(vec![vec![rewrite(BAD_FAMILY, 1, 0)]]);
    let err = dump(|| scripts.connect(), &flagged_v4(), &mut sink()).expect_err("error");
    assert!(matches!(err, DumpError::Kernel { errno: -22 }), "{err}");
    assert!(err.to_string().contains("Invalid argument"), "{err}");
    assert_eq!(scripts.connects, 1);
}

#[test]
fn done_with_enoent_means_the_family_is_not_available() {
    let mut scripts = Scripts::new(vec![vec![rewrite(NO_HANDLER, 1, 0)]]);
    let err = dump(|| scripts.connect(), &flagged_v4(), &mut sink()).expect_err("no handler");
    assert!(matches!(err, DumpError::FamilyUnsupported), "{err}");
}

#[test]
fn done_with_another_errno_is_a_kernel_error() {
    let mut done = rewrite(V4_DONE, 1, 0);
    done[16..20].copy_from_slice(&(-16i32).to_ne_bytes()); // -EBUSY
    let mut scripts = Scripts::new(vec![vec![done]]);
    let err = dump(|| scripts.connect(), &flagged_v4(), &mut sink()).expect_err("busy");
    assert!(matches!(err, DumpError::Kernel { errno: -16 }), "{err}");
}

#[test]
fn a_truncated_datagram_is_retried_with_a_larger_buffer() {
    let huge = [V4_DATAGRAM; 60].concat(); // 79 KiB: more than the first buffer
    assert!(huge.len() > RECV_BUFFER);
    let mut scripts = Scripts::new(vec![
        vec![huge.clone(), V4_DONE.to_vec()],
        vec![rewrite(&huge, 2, 0), rewrite(V4_DONE, 2, 0)],
    ]);
    let mut s = sink();
    dump(|| scripts.connect(), &flagged_v4(), &mut s).expect("dump");
    assert_eq!(scripts.connects, 2);
    assert_eq!(s.sockets.len(), 240);
}

#[test]
fn messages_of_another_request_are_ignored() {
    let mut scripts = Scripts::new(vec![vec![
        rewrite(V4_DATAGRAM, 99, 0),
        V4_DATAGRAM.to_vec(),
        V4_DONE.to_vec(),
    ]]);
    let mut s = sink();
    dump(|| scripts.connect(), &flagged_v4(), &mut s).expect("dump");
    assert_eq!(s.sockets.len(), 4);
}

#[test]
fn a_socket_that_ends_before_done_is_retried_then_reported() {
    let mut scripts = Scripts::new(vec![vec![V4_DATAGRAM.to_vec()]; MAX_ATTEMPTS as usize]);
    let err = dump(|| scripts.connect(), &flagged_v4(), &mut sink()).expect_err("eof");
    assert!(matches!(err, DumpError::Eof), "{err}");
    assert_eq!(scripts.connects, MAX_ATTEMPTS as usize);
}

#[test]
fn a_malformed_record_is_an_error_not_a_panic() {
    let mut bad = V4_DATAGRAM[..16 + 40].to_vec();
    bad[0..4].copy_from_slice(&56u32.to_ne_bytes());
    let mut scripts = Scripts::new(vec![vec![bad, V4_DONE.to_vec()]]);
    let err = dump(|| scripts.connect(), &flagged_v4(), &mut sink()).expect_err("malformed");
    assert!(matches!(err, DumpError::Parse(_)), "{err}");
}

#[test]
fn tables_fall_back_per_family_skip_a_missing_ipv6_but_report_an_ipv4_failure() {
    // The combined request refused (a kernel without it), then one
    // all-states dump per family.
    let refused = || vec![rewrite(BAD_FAMILY, 1, 0)];
    let v4_ok = || vec![V4_DATAGRAM.to_vec(), V4_DONE.to_vec()];
    let mut scripts = Scripts::new(vec![refused(), v4_ok(), vec![rewrite(NO_HANDLER, 1, 0)]]);
    let (tables, errors) = dump_tables(
        NetnsId(5),
        || scripts.connect(),
        Wants {
            counts: true,
            ..Wants::default()
        },
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(tables.flagged.len(), 4);
    assert_eq!(tables.states.get(TcpState::CloseWait), 2);
    let sent = scripts.sent.borrow();
    assert_eq!(&sent[0][4..6], &TCPDIAG_GETSOCK.to_ne_bytes());
    assert_eq!(sent[1][16], 2, "then AF_INET");
    assert_eq!(sent[2][16], 10, "then AF_INET6");
    assert_eq!(sent.len(), 3, "one dump a family: {} sent", sent.len());
    let states = |req: &[u8]| u32::from_ne_bytes([req[20], req[21], req[22], req[23]]);
    assert_eq!(states(&sent[1]), ALL_STATES, "every state, counted at once");
    drop(sent);

    let mut scripts = Scripts::new(vec![refused(), vec![rewrite(NO_HANDLER, 1, 0)]]);
    let (_, errors) = dump_tables(
        NetnsId(5),
        || scripts.connect(),
        Wants {
            counts: true,
            ..Wants::default()
        },
    );
    assert_eq!(
        errors.len(),
        2,
        "IPv4 failed, and IPv6 found no more script"
    );
    assert_eq!(errors[0].family, Family::V4);
    assert!(matches!(errors[0].error, DumpError::FamilyUnsupported));
}
