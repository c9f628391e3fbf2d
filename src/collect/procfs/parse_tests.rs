//! The /proc parsers read text captured from Linux 6.18 (this machine) and the
//! edge cases the kernel allows (comm with spaces, parentheses or bytes that
//! are not UTF-8, zombies, kernel threads, unlimited limits) as the kernel
//! means them, name the unit, container or pod of each cgroup layout, find
//! netstat's listen counters by column name, and turn malformed text into
//! an error, never a panic.

use super::*;

/// `cat /proc/self/stat`.
pub(super) const STAT_CAT: &[u8] = b"7309 (cat) R 7307 7307 1033 0 -1 4194304 101 0 0 0 0 0 0 0 20 0 1 0 47821 3133440 377 18446744073709551615 94749442678784 94749442698665 140723641472448 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 94749442714672 94749442716288 94750209712128 140723641477856 140723641477876 140723641477876 140723641479147 0\n";
/// A process that renamed itself (prctl PR_SET_NAME) to `we) ird (x`.
pub(super) const STAT_WEIRD_COMM: &[u8] = b"7455 (we) ird (x) R 7453 7453 1033 0 -1 4194304 2899 6557 2 0 3 0 4 0 20 0 1 0 48022 17145856 3422 18446744073709551615 94027281330176 94027281330517 140725561347264 0 0 0 0 16781312 2 0 0 0 17 1 0 0 0 0 0 94027281341872 94027281342488 94028214984704 140725561350271 140725561350439 140725561350439 140725561352143 0\n";
/// A process that renamed itself (prctl PR_SET_NAME) to the bytes
/// `cw\xff\xfe(x) \xc3`: the kernel writes comm as it is, UTF-8 or not.
pub(super) const STAT_NON_UTF8_COMM: &[u8] = b"14253 (cw\xff\xfe(x) \xc3) R 14251 14251 12034 0 -1 4194304 2898 6539 15 1 5 2 4 2 20 0 1 0 175507 17289216 3420 18446744073709551615 93851025416192 93851025416533 140722357414560 0 0 0 0 16781312 2 0 0 0 17 1 0 0 0 0 0 93851025427888 93851025428504 93851808276480 140722357422337 140722357422380 140722357422380 140722357424079 0\n";
/// A zombie: most fields zeroed, starttime kept.
const STAT_ZOMBIE: &[u8] = b"7542 (python3) Z 7501 7453 1033 0 -1 4227148 221 0 0 0 0 0 0 0 20 0 1 0 48061 0 0 18446744073709551615 0 0 0 0 0 0 0 16781312 2 1 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
/// A kernel thread.
pub(super) const STAT_KTHREAD: &[u8] = b"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 22 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 1 0 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

/// `cat /proc/self/limits`.
pub(super) const LIMITS: &[u8] =
    b"Limit                     Soft Limit           Hard Limit           Units     \n\
Max cpu time              unlimited            unlimited            seconds   \n\
Max file size             unlimited            unlimited            bytes     \n\
Max data size             unlimited            unlimited            bytes     \n\
Max stack size            8388608              unlimited            bytes     \n\
Max core file size        0                    unlimited            bytes     \n\
Max resident set          unlimited            unlimited            bytes     \n\
Max processes             96365                96365                processes \n\
Max open files            20000                20000                files     \n\
Max locked memory         8388608              8388608              bytes     \n\
Max address space         unlimited            unlimited            bytes     \n\
Max file locks            unlimited            unlimited            locks     \n\
Max pending signals       96365                96365                signals   \n\
Max msgqueue size         819200               819200               bytes     \n\
Max nice priority         0                    0                    \n\
Max realtime priority     0                    0                    \n\
Max realtime timeout      unlimited            unlimited            us        \n";

#[test]
fn stat_of_an_ordinary_process() {
    let s = stat(STAT_CAT).expect("parses");
    assert_eq!(
        s,
        Stat {
            pid: 7309,
            comm: "cat".into(),
            state: 'R',
            start_time: 47821,
            kernel_thread: false,
        }
    );
}

#[test]
fn comm_runs_to_the_last_parenthesis() {
    let s = stat(STAT_WEIRD_COMM).expect("parses");
    assert_eq!(s.comm, "we) ird (x");
    assert_eq!(s.pid, 7455);
    assert_eq!(s.start_time, 48022);
}

#[test]
fn a_comm_of_non_utf8_bytes_is_replaced_not_rejected() {
    let s = stat(STAT_NON_UTF8_COMM).expect("parses");
    assert_eq!(
        s,
        Stat {
            pid: 14253,
            comm: "cw\u{fffd}\u{fffd}(x) \u{fffd}".into(),
            state: 'R',
            start_time: 175507,
            kernel_thread: false,
        }
    );
}

#[test]
fn zombies_and_kernel_threads_keep_their_start_time() {
    let z = stat(STAT_ZOMBIE).expect("parses");
    assert_eq!(
        (z.state, z.start_time, z.kernel_thread),
        ('Z', 48061, false)
    );
    let k = stat(STAT_KTHREAD).expect("parses");
    assert_eq!(
        (k.comm.as_str(), k.start_time, k.kernel_thread),
        ("kthreadd", 22, true)
    );
}

#[test]
fn malformed_stat_is_an_error_never_a_panic() {
    for bad in [
        &b""[..],
        b"(",
        b")(",
        b"12 (x",
        b"(x) R 1",
        b"abc (x) R 1 2 3",
        b"12 (x) R 1 2 3",
        b"12 (x)",
        b"\xff\xfe (x) R",
    ] {
        assert!(stat(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
    for len in 0..STAT_CAT.len() {
        let _ = stat(&STAT_CAT[..len]);
    }
}

#[test]
fn soft_open_files_limit() {
    assert_eq!(max_open_files(LIMITS), Ok(Some(20000)));
    let unlimited = String::from_utf8_lossy(LIMITS).replace(
        "Max open files            20000 ",
        "Max open files            unlimited ",
    );
    assert_eq!(max_open_files(unlimited.as_bytes()), Ok(None));
}

#[test]
fn limits_without_the_line_or_with_garbage_are_errors() {
    assert!(max_open_files(b"").is_err());
    assert!(max_open_files(b"Max open files").is_err());
    assert!(max_open_files(b"Max open files    lots   lots files").is_err());
    for len in 0..LIMITS.len() {
        let _ = max_open_files(&LIMITS[..len]);
    }
}

#[test]
fn file_nr_counts_allocated_minus_free() {
    let nr = file_nr(b"342\t0\t2466170\n").expect("parses");
    assert_eq!(nr.open(), 342);
    assert_eq!(nr.max, 2466170);
    // 2.4-era kernels reported free handles.
    assert_eq!(file_nr(b"1000 200 5000\n").expect("parses").open(), 800);
    assert!(file_nr(b"342\t0\n").is_err());
    assert!(file_nr(b"a b c").is_err());
}

#[test]
fn fd_links_are_classified() {
    assert_eq!(fd_target(b"socket:[9765]"), FdTarget::Socket(9765));
    assert_eq!(fd_target(b"/tmp/big.log (deleted)"), FdTarget::MaybeDeleted);
    assert_eq!(fd_target(b"/memfd:shm (deleted)"), FdTarget::MaybeDeleted);
    assert_eq!(fd_target(b"/var/log/syslog"), FdTarget::File);
    assert_eq!(fd_target(b"/dev/null"), FdTarget::File);
    assert_eq!(fd_target(b"pipe:[1234]"), FdTarget::Pipe);
    assert_eq!(fd_target(b"anon_inode:[eventpoll]"), FdTarget::AnonInode);
    assert_eq!(fd_target(b"anon_inode:inotify"), FdTarget::AnonInode);
    assert_eq!(fd_target(b"net:[4026531833]"), FdTarget::Other);
    assert_eq!(fd_target(b"socket:[]"), FdTarget::Other);
    assert_eq!(fd_target(b"socket:[12x]"), FdTarget::Other);
    assert_eq!(
        fd_target(b"socket:[99999999999999999999999]"),
        FdTarget::Other
    );
    assert_eq!(fd_target(b"socket:[1"), FdTarget::Other);
    // A relative name is never a deleted file.
    assert_eq!(fd_target(b"x (deleted)"), FdTarget::Other);
    assert_eq!(deleted_path(b"/tmp/big.log (deleted)"), b"/tmp/big.log");
}

#[test]
fn netns_link_gives_the_namespace_inode() {
    assert_eq!(netns_link(b"net:[4026531833]"), Some(4026531833));
    assert_eq!(netns_link(b"mnt:[4026531833]"), None);
}

#[test]
fn cmdline_joins_arguments() {
    assert_eq!(
        cmdline(b"cat\0/proc/self/cmdline\0", 100),
        "cat /proc/self/cmdline"
    );
    assert_eq!(cmdline(b"", 100), "");
    assert_eq!(cmdline(b"abcdef\0", 3), "abc…");
    // Invalid UTF-8 is replaced, not rejected.
    assert_eq!(cmdline(b"a\xffb\0", 100), "a\u{fffd}b");
}

/// redis-server's cmdline on Debian (setproctitle): the title, then the
/// rest of the argv area as NULs; some programs pad with blanks.
#[test]
fn cmdline_drops_the_padding_of_a_renamed_process_and_escapes_controls() {
    let redis = b"/usr/bin/redis-server 127.0.0.1:6390\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
    assert_eq!(cmdline(redis, 4096), "/usr/bin/redis-server 127.0.0.1:6390");
    assert_eq!(
        cmdline(b"nginx: worker process   \0\0\0", 4096),
        "nginx: worker process"
    );
    assert_eq!(cmdline(b"\0\0\0", 4096), "");
    // The cut and its ellipsis come after the padding is gone.
    assert_eq!(cmdline(b"abc\0\0\0\0\0\0", 3), "abc");
    assert_eq!(cmdline(b"a\x1b[31mb\0", 100), "a\\u{1b}[31mb");
    assert_eq!(cmdline(b"a\nb\0", 100), "a\\nb");
}

/// `cat /proc/self/cgroup` on this machine (cgroup v1 and a v2 mount).
pub(super) const CGROUP_HYBRID_ROOT: &[u8] = b"9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n4:memory:/process_api/6f28d1a16fee03ae276036d3a166ee9e\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n";

#[test]
fn root_cgroup_names_no_unit() {
    assert_eq!(unit_from_cgroup(CGROUP_HYBRID_ROOT), Ok(None));
}

#[test]
fn systemd_service_on_cgroup_v2() {
    assert_eq!(
        unit_from_cgroup(b"0::/system.slice/nginx.service\n"),
        Ok(Some("nginx.service".into()))
    );
}

#[test]
fn malformed_cgroup_is_an_error() {
    assert!(unit_from_cgroup(b"garbage\n").is_err());
    assert!(unit_from_cgroup(b"x:y:/z\n").is_err());
}

// Samples in the layouts each runtime writes (ids are examples).
const ID: &str = "7d4bd3e0c7e1a4f5b2d3c9e8a1f0b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9";

/// cgroup v1, Docker with the cgroupfs driver (Debian, Ubuntu ≤ 20.04).
fn docker_cgroupfs_v1() -> String {
    format!(
        "12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n4:cpu,cpuacct:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/system.slice/containerd.service\n"
    )
}

#[test]
fn docker_with_the_cgroupfs_driver_on_cgroup_v1() {
    assert_eq!(
        unit_from_cgroup(docker_cgroupfs_v1().as_bytes()),
        Ok(Some("docker:7d4bd3e0c7e1".into())),
        "the systemd hierarchy names the container, not the v2 line"
    );
}

#[test]
fn docker_with_the_systemd_driver_on_cgroup_v2() {
    let text = format!("0::/system.slice/docker-{ID}.scope\n");
    assert_eq!(
        unit_from_cgroup(text.as_bytes()),
        Ok(Some("docker:7d4bd3e0c7e1".into()))
    );
}

#[test]
fn containerd_in_kubepods_with_the_systemd_driver() {
    let text = format!(
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f1c2b7a_9e4d_4c1b_8a2e_5d6f7a8b9c0d.slice/cri-containerd-{ID}.scope\n"
    );
    assert_eq!(
        unit_from_cgroup(text.as_bytes()),
        Ok(Some("containerd:7d4bd3e0c7e1".into()))
    );
}

#[test]
fn kubernetes_with_the_cgroupfs_driver_on_cgroup_v1() {
    let text = format!(
        "11:devices:/kubepods/besteffort/pod3f1c2b7a-9e4d-4c1b-8a2e-5d6f7a8b9c0d/{ID}\n1:name=systemd:/kubepods/besteffort/pod3f1c2b7a-9e4d-4c1b-8a2e-5d6f7a8b9c0d/{ID}\n"
    );
    assert_eq!(
        unit_from_cgroup(text.as_bytes()),
        Ok(Some("container:7d4bd3e0c7e1".into()))
    );
}

#[test]
fn a_pod_without_a_container_cgroup_is_named_by_its_uid() {
    // cri-o's conmon runs in the pod's slice, next to the containers.
    let text = format!(
        "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod3f1c2b7a_9e4d_4c1b_8a2e_5d6f7a8b9c0d.slice/crio-conmon-{ID}.scope\n"
    );
    assert_eq!(
        unit_from_cgroup(text.as_bytes()),
        Ok(Some("pod:3f1c2b7a-9e4d-4c1b-8a2e-5d6f7a8b9c0d".into()))
    );
}

#[test]
fn cri_o_container_scope() {
    let text = format!(
        "0::/kubepods.slice/kubepods-pod3f1c2b7a_9e4d_4c1b_8a2e_5d6f7a8b9c0d.slice/crio-{ID}.scope\n"
    );
    assert_eq!(
        unit_from_cgroup(text.as_bytes()),
        Ok(Some("cri-o:7d4bd3e0c7e1".into()))
    );
}

#[test]
fn podman_rootful_and_rootless() {
    let rootful = format!("0::/machine.slice/libpod-{ID}.scope\n");
    assert_eq!(
        unit_from_cgroup(rootful.as_bytes()),
        Ok(Some("podman:7d4bd3e0c7e1".into()))
    );
    // Rootless podman with cgroup v2 nests the payload in .../container.
    let rootless = format!(
        "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container\n"
    );
    assert_eq!(
        unit_from_cgroup(rootless.as_bytes()),
        Ok(Some("podman:7d4bd3e0c7e1".into()))
    );
}

#[test]
fn systemd_units_on_cgroup_v1_and_user_services() {
    let v1 = b"12:pids:/system.slice/nginx.service\n6:memory:/system.slice/nginx.service\n1:name=systemd:/system.slice/nginx.service\n";
    assert_eq!(unit_from_cgroup(v1), Ok(Some("nginx.service".into())));
    let user = b"0::/user.slice/user-1000.slice/user@1000.service/app.slice/pipewire.service\n";
    assert_eq!(unit_from_cgroup(user), Ok(Some("pipewire.service".into())));
    let session = b"0::/user.slice/user-1000.slice/session-3.scope\n";
    assert_eq!(
        unit_from_cgroup(session),
        Ok(Some("session-3.scope".into()))
    );
    let slice_only = b"0::/system.slice\n";
    assert_eq!(unit_from_cgroup(slice_only), Ok(None));
}

/// /proc/thread-self/net/netstat of a scratch network namespace, 2.5 s after
/// 20 clients connected to a backlog-1 listener that never accepts: 2 got
/// into the accept queue, the SYNs of the other 18 were dropped three times
/// each (at 0, 1 and 2 s), and each drop counted once in ListenOverflows and
/// once in ListenDrops.
pub(super) const NETSTAT_OVERFLOWED: &[u8] = b"TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed EmbryonicRsts PruneCalled RcvPruned OfoPruned OutOfWindowIcmps LockDroppedIcmps ArpFilter TW TWRecycled TWKilled PAWSActive PAWSEstab BeyondWindow TSEcrRejected PAWSOldAck PAWSTimewait DelayedACKs DelayedACKLocked DelayedACKLost ListenOverflows ListenDrops TCPHPHits TCPPureAcks TCPHPAcks TCPRenoRecovery TCPSackRecovery TCPSACKReneging TCPSACKReorder TCPRenoReorder TCPTSReorder TCPFullUndo TCPPartialUndo TCPDSACKUndo TCPLossUndo TCPLostRetransmit TCPRenoFailures TCPSackFailures TCPLossFailures TCPFastRetrans TCPSlowStartRetrans TCPTimeouts TCPLossProbes TCPLossProbeRecovery TCPRenoRecoveryFail TCPSackRecoveryFail TCPRcvCollapsed TCPBacklogCoalesce TCPDSACKOldSent TCPDSACKOfoSent TCPDSACKRecv TCPDSACKOfoRecv TCPAbortOnData TCPAbortOnClose TCPAbortOnMemory TCPAbortOnTimeout TCPAbortOnLinger TCPAbortFailed TCPMemoryPressures TCPMemoryPressuresChrono TCPSACKDiscard TCPDSACKIgnoredOld TCPDSACKIgnoredNoUndo TCPSpuriousRTOs TCPMD5NotFound TCPMD5Unexpected TCPMD5Failure TCPSackShifted TCPSackMerged TCPSackShiftFallback TCPBacklogDrop PFMemallocDrop TCPMinTTLDrop TCPDeferAcceptDrop IPReversePathFilter TCPTimeWaitOverflow TCPReqQFullDoCookies TCPReqQFullDrop TCPRetransFail TCPRcvCoalesce TCPOFOQueue TCPOFODrop TCPOFOMerge TCPChallengeACK TCPSYNChallenge TCPFastOpenActive TCPFastOpenActiveFail TCPFastOpenPassive TCPFastOpenPassiveFail TCPFastOpenListenOverflow TCPFastOpenCookieReqd TCPFastOpenBlackhole TCPSpuriousRtxHostQueues BusyPollRxPackets TCPAutoCorking TCPFromZeroWindowAdv TCPToZeroWindowAdv TCPWantZeroWindowAdv TCPSynRetrans TCPOrigDataSent TCPHystartTrainDetect TCPHystartTrainCwnd TCPHystartDelayDetect TCPHystartDelayCwnd TCPACKSkippedSynRecv TCPACKSkippedPAWS TCPACKSkippedSeq TCPACKSkippedFinWait2 TCPACKSkippedTimeWait TCPACKSkippedChallenge TCPWinProbe TCPKeepAlive TCPMTUPFail TCPMTUPSuccess TCPDelivered TCPDeliveredCE TCPAckCompressed TCPZeroWindowDrop TCPRcvQDrop TCPWqueueTooBig TCPFastOpenPassiveAltKey TcpTimeoutRehash TcpDuplicateDataRehash TCPDSACKRecvSegs TCPDSACKIgnoredDubious TCPMigrateReqSuccess TCPMigrateReqFailure TCPPLBRehash TCPAORequired TCPAOBad TCPAOKeyNotFound TCPAOGood TCPAODroppedIcmps\n\
TcpExt: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 54 54 0 2 0 0 0 0 0 0 0 0 0 0 0 18 0 0 0 0 0 36 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 36 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 2 0 0 0 0 0 0 36 0 0 0 0 0 0 0 0 0 0 0\n\
IpExt: InNoRoutes InTruncatedPkts InMcastPkts OutMcastPkts InBcastPkts OutBcastPkts InOctets OutOctets InMcastOctets OutMcastOctets InBcastOctets OutBcastOctets InCsumErrors InNoECTPkts InECT1Pkts InECT0Pkts InCEPkts ReasmOverlaps\n\
IpExt: 0 0 0 0 0 0 3584 3584 0 0 0 0 0 60 0 0 0 0\n\
MPTcpExt: MPCapableSYNRX MPCapableSYNTX MPCapableSYNACKRX MPCapableACKRX MPCapableFallbackACK MPCapableFallbackSYNACK MPCapableSYNTXDrop MPCapableSYNTXDisabled MPCapableEndpAttempt MPFallbackTokenInit MPTCPRetrans MPJoinNoTokenFound MPJoinSynRx MPJoinSynBackupRx MPJoinSynAckRx MPJoinSynAckBackupRx MPJoinSynAckHMacFailure MPJoinAckRx MPJoinAckHMacFailure MPJoinRejected MPJoinSynTx MPJoinSynTxCreatSkErr MPJoinSynTxBindErr MPJoinSynTxConnectErr DSSNotMatching DSSCorruptionFallback DSSCorruptionReset InfiniteMapTx InfiniteMapRx DSSNoMatchTCP DataCsumErr OFOQueueTail OFOQueue OFOMerge NoDSSInWindow DuplicateData AddAddr AddAddrTx AddAddrTxDrop EchoAdd EchoAddTx EchoAddTxDrop PortAdd AddAddrDrop MPJoinPortSynRx MPJoinPortSynAckRx MPJoinPortAckRx MismatchPortSynRx MismatchPortAckRx RmAddr RmAddrDrop RmAddrTx RmAddrTxDrop RmSubflow MPPrioTx MPPrioRx MPFailTx MPFailRx MPFastcloseTx MPFastcloseRx MPRstTx MPRstRx SubflowStale SubflowRecover SndWndShared RcvWndShared RcvWndConflictUpdate RcvWndConflict MPCurrEstab Blackhole MPCapableDataFallback MD5SigFallback DssFallback SimultConnectFallback FallbackFailed WinProbe\n\
MPTcpExt: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

#[test]
fn listen_counters_of_a_namespace_whose_listener_overflowed() {
    assert_eq!(
        listen_counters(NETSTAT_OVERFLOWED),
        Ok(ListenCounters {
            overflows: 54,
            drops: 54,
        })
    );
}

/// The captured file with its lines rewritten by `edit` (prefix, words).
fn netstat_edited(mut edit: impl FnMut(&str, &mut Vec<String>)) -> Vec<u8> {
    let text = String::from_utf8_lossy(NETSTAT_OVERFLOWED);
    let mut out = String::new();
    for line in text.lines() {
        let (prefix, rest) = line.split_once(' ').expect("prefix");
        let mut words: Vec<String> = rest.split(' ').map(str::to_string).collect();
        edit(prefix, &mut words);
        out.push_str(&format!("{prefix} {}\n", words.join(" ")));
    }
    out.into_bytes()
}

#[test]
fn listen_counters_are_found_by_name_wherever_the_kernel_puts_them() {
    // A newer kernel's column before them, and the two swapped.
    let mut at = None;
    let text = netstat_edited(|prefix, words| {
        if prefix != "TcpExt:" {
            return;
        }
        match at {
            None => {
                words.insert(0, "TCPNewThing".into());
                let a = words.iter().position(|w| w == "ListenOverflows");
                let a = a.expect("the column");
                words.swap(a, a + 1);
                at = Some(a);
            }
            Some(a) => {
                words.insert(0, "7".into());
                words[a] = "22".into(); // under ListenDrops
                words[a + 1] = "11".into(); // under ListenOverflows
            }
        }
    });
    assert_eq!(
        listen_counters(&text),
        Ok(ListenCounters {
            overflows: 11,
            drops: 22,
        })
    );
    // An older kernel's short TcpExt:, other sections before it.
    let old = b"IpExt: InNoRoutes InTruncatedPkts\nIpExt: 0 0\n\
TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPPrequeued\n\
TcpExt: 1 18446744073709551615 3 4\n";
    assert_eq!(
        listen_counters(old),
        Ok(ListenCounters {
            overflows: u64::MAX,
            drops: 3,
        })
    );
}

#[test]
fn netstat_without_the_pair_or_the_columns_is_an_error() {
    let missing = |what: &str, text: &[u8]| {
        let err = listen_counters(text).expect_err(what);
        assert_eq!(err.what, "netstat");
        assert!(err.detail.contains(what), "{err}");
    };
    missing("no TcpExt: line", b"");
    missing("no TcpExt: line", b"IpExt: InNoRoutes\nIpExt: 0\n");
    // The names line cut off before its values.
    let cut = NETSTAT_OVERFLOWED
        .iter()
        .position(|&b| b == b'\n')
        .expect("a line");
    missing("no TcpExt: values", &NETSTAT_OVERFLOWED[..cut + 1]);
    missing(
        "no TcpExt: values",
        b"TcpExt: ListenOverflows ListenDrops\nIpExt: 1 2\n",
    );
    missing(
        "2 names but 1 values",
        b"TcpExt: ListenOverflows ListenDrops\nTcpExt: 1\n",
    );
    missing(
        "no ListenDrops",
        b"TcpExt: ListenOverflows X\nTcpExt: 1 2\n",
    );
    missing(
        "ListenOverflows is \"-1\"",
        b"TcpExt: ListenOverflows ListenDrops\nTcpExt: -1 2\n",
    );
    missing(
        "ListenDrops is \"18446744073709551616\"",
        b"TcpExt: ListenOverflows ListenDrops\nTcpExt: 1 18446744073709551616\n",
    );
    missing(
        "ListenOverflows is \"+1\"",
        b"TcpExt: ListenOverflows ListenDrops\nTcpExt: +1 2\n",
    );
    for len in 0..NETSTAT_OVERFLOWED.len() {
        let _ = listen_counters(&NETSTAT_OVERFLOWED[..len]);
    }
}

/// `cat /proc/1/status` here: pid 1 (process_api) holds CAP_SYS_RESOURCE,
/// which the bounding set of every other process of the sandbox excludes.
pub(super) const STATUS_PID1: &[u8] =
    include_bytes!("../../../tests/fixtures/status/pid1-process_api.txt");

#[test]
fn credentials_are_the_uid_gid_and_capability_lines_of_status() {
    let c = credentials(STATUS_PID1).expect("parses");
    assert_eq!(c.uid, [0; 4]);
    assert_eq!(c.gid, [0; 4]);
    assert_eq!(c.permitted, CapSet(0x0000_01ff_ffff_ffff));
    assert_eq!(c.effective, CapSet(0x0000_01ff_ffff_ffff));
    assert_eq!(c.bounding, Some(CapSet(0x0000_01ff_feff_ffff)));
    let nobody =
        credentials(include_bytes!("../../../tests/fixtures/status/nobody.txt")).expect("parses");
    assert_eq!(nobody.uid, [65534; 4]);
    assert_eq!(nobody.effective, CapSet::EMPTY);
}

#[test]
fn status_without_its_capability_lines_is_an_error() {
    let text = String::from_utf8_lossy(STATUS_PID1);
    let cut: String = text
        .lines()
        .filter(|l| !l.starts_with("CapEff:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(credentials(cut.as_bytes()).is_err());
    for len in 0..STATUS_PID1.len() {
        let _ = credentials(&STATUS_PID1[..len]);
    }
}

/// /proc/net/sockstat of this host during a test run (Linux 6.18).
pub(super) const SOCKSTAT_HOST: &[u8] = b"sockets: used 104
TCP: inuse 91 orphan 1 tw 6490 alloc 91 mem 61
UDP: inuse 0 mem 0
UDPLITE: inuse 0
RAW: inuse 0
FRAG: inuse 0 memory 0
";
/// /proc/net/sockstat and sockstat6 of a namespace holding an IPv6
/// listener and a connection to it, after an IPv4 connection closed
/// (Linux 6.18).
pub(super) const SOCKSTAT_NS: &[u8] = b"sockets: used 4
TCP: inuse 1 orphan 0 tw 1 alloc 5 mem 103
UDP: inuse 0 mem 0
UDPLITE: inuse 0
RAW: inuse 0
FRAG: inuse 0 memory 0
";
pub(super) const SOCKSTAT6_NS: &[u8] = b"TCP6: inuse 3
UDP6: inuse 0
UDPLITE6: inuse 0
RAW6: inuse 0
FRAG6: inuse 0 memory 0
";

#[test]
fn sockstat_gives_the_tcp_sockets_in_use_and_in_time_wait() {
    assert_eq!(
        tcp_sockstat(SOCKSTAT_NS, Some(SOCKSTAT6_NS)),
        Ok(TcpSockstat {
            inuse: 1,
            tw: 1,
            inuse6: 3
        })
    );
    // IPv6 disabled: no sockstat6, no IPv6 socket.
    assert_eq!(
        tcp_sockstat(SOCKSTAT_HOST, None),
        Ok(TcpSockstat {
            inuse: 91,
            tw: 6490,
            inuse6: 0
        })
    );
}

#[test]
fn sockstat_without_its_tcp_fields_is_an_error() {
    let no_tcp = b"sockets: used 1\nUDP: inuse 0 mem 0\n";
    assert!(tcp_sockstat(no_tcp, None).is_err());
    let no_tw = b"TCP: inuse 1 orphan 0 alloc 1 mem 0\n";
    assert!(tcp_sockstat(no_tw, None).is_err());
    let bad = b"TCP: inuse x orphan 0 tw 0 alloc 1 mem 0\n";
    assert!(tcp_sockstat(bad, None).is_err());
    // A value is never taken for a key: "0" here is inuse's value.
    let shifted = b"TCP: inuse 0 tw\n";
    assert!(tcp_sockstat(shifted, None).is_err());
    assert!(tcp_sockstat(SOCKSTAT_NS, Some(b"UDP6: inuse 0\n")).is_err());
}
