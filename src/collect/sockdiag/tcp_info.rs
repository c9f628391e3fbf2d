//! `struct tcp_info` (INET_DIAG_INFO) parsed from raw bytes.
//!
//! The struct only ever grows at its end, so older kernels send a shorter
//! payload: every field is read only when the payload reaches it. The
//! netlink-packet-sock-diag `rich_nlas` parser is not used because it rejects
//! payloads shorter than its own idea of the struct (and turning the feature on
//! changes the NLA type for every crate in the build).

use crate::model::TcpInfo;

use super::parse::ParseError;

/// Byte offsets in `struct tcp_info` (include/uapi/linux/tcp.h).
mod offset {
    pub const STATE: usize = 0;
    pub const LAST_DATA_SENT: usize = 44;
    pub const LAST_DATA_RECV: usize = 52;
    pub const LAST_ACK_RECV: usize = 56;
}

/// The shortest payload that carries every field closewatch reads
/// (`tcpi_last_ack_recv` ends at byte 60; every kernel since 2.6 sends more).
pub const MIN_LEN: usize = offset::LAST_ACK_RECV + 4;

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at + 4)?;
    Some(u32::from_ne_bytes([field[0], field[1], field[2], field[3]]))
}

/// Parses the fields closewatch uses out of a raw `tcp_info` payload.
pub fn parse(bytes: &[u8]) -> Result<TcpInfo, ParseError> {
    let short = || ParseError::Truncated {
        what: "tcp_info",
        need: MIN_LEN,
        have: bytes.len(),
    };
    Ok(TcpInfo {
        state: *bytes.get(offset::STATE).ok_or_else(short)?,
        last_data_sent_ms: u32_at(bytes, offset::LAST_DATA_SENT).ok_or_else(short)?,
        last_data_recv_ms: u32_at(bytes, offset::LAST_DATA_RECV).ok_or_else(short)?,
        last_ack_recv_ms: u32_at(bytes, offset::LAST_ACK_RECV).ok_or_else(short)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first 64 bytes of a real tcp_info (Linux 6.18 sends 280), captured
    /// with `examples/record_fixture.rs` from a CLOSE_WAIT socket: data
    /// received at t0, the peer's FIN at t0+2 s, dumped at t0+4.86 s.
    #[rustfmt::skip]
    const CLOSE_WAIT_HEAD: [u8; 64] = [
        0x08, 0x00, 0x00, 0x00, 0x00, 0x07, 0xaa, 0x01, // tcpi_state 8 (CLOSE_WAIT), ca_state, retransmits, probes, backoff, options, wscale, flags
        0xe0, 0x1c, 0x03, 0x00, // tcpi_rto: 204000
        0x40, 0x9c, 0x00, 0x00, // tcpi_ato: 40000
        0x00, 0x80, 0x00, 0x00, // tcpi_snd_mss: 32768
        0x18, 0x02, 0x00, 0x00, // tcpi_rcv_mss: 536
        0x00, 0x00, 0x00, 0x00, // tcpi_unacked: 0
        0x00, 0x00, 0x00, 0x00, // tcpi_sacked: 0
        0x00, 0x00, 0x00, 0x00, // tcpi_lost: 0
        0x00, 0x00, 0x00, 0x00, // tcpi_retrans: 0
        0x00, 0x00, 0x00, 0x00, // tcpi_fackets: 0
        0xf8, 0x12, 0x00, 0x00, // tcpi_last_data_sent: 4856 ms
        0x00, 0x00, 0x00, 0x00, // tcpi_last_ack_sent: 0
        0xf8, 0x12, 0x00, 0x00, // tcpi_last_data_recv: 4856 ms (the data)
        0x28, 0x0b, 0x00, 0x00, // tcpi_last_ack_recv: 2856 ms (the FIN, 2 s after the data)
        0xff, 0xff, 0x00, 0x00, // tcpi_pmtu: 65535
    ];

    #[test]
    fn reads_the_fields_of_a_close_wait_socket() {
        let info = parse(&CLOSE_WAIT_HEAD).expect("parses");
        assert_eq!(info.state, 8);
        assert_eq!(info.last_data_sent_ms, 4856);
        assert_eq!(info.last_data_recv_ms, 4856);
        assert_eq!(info.last_ack_recv_ms, 2856);
    }

    #[test]
    fn accepts_exactly_the_minimum_length() {
        assert!(parse(&CLOSE_WAIT_HEAD[..MIN_LEN]).is_ok());
    }

    #[test]
    fn rejects_every_shorter_payload() {
        for len in 0..MIN_LEN {
            let err = parse(&CLOSE_WAIT_HEAD[..len]).expect_err("too short");
            assert!(matches!(err, ParseError::Truncated { have, .. } if have == len));
        }
    }
}
