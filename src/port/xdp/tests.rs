use super::*;

#[test]
fn spec_options() {
    let mut s: PortSpec = "xdp:veth0,queues=2,mode=skb,zerocopy,busy_poll"
        .parse()
        .unwrap();
    let c = XdpConfig::from_spec(&mut s, 1).unwrap();
    assert_eq!(c.queues, 2);
    assert_eq!(c.mode, XdpMode::Skb);
    assert_eq!(c.zerocopy, ZeroCopy::Require);
    assert!(c.busy_poll);
    let mut s: PortSpec = "xdp:veth0,zerocopy=off".parse().unwrap();
    let c = XdpConfig::from_spec(&mut s, 3).unwrap();
    assert_eq!(
        (c.queues, c.zerocopy, c.mode),
        (3, ZeroCopy::Off, XdpMode::Auto)
    );
    for bad in [
        "xdp:v,mode=turbo",
        "xdp:v,queues=0",
        "xdp:v,frame_size=3000",
        "xdp:v,frames=100",
        "xdp:v,colour=red",
    ] {
        let mut s: PortSpec = bad.parse().unwrap();
        assert!(XdpConfig::from_spec(&mut s, 1).is_err(), "{bad}");
    }
}

#[test]
fn missing_interface_is_one_sentence() {
    let e = XdpPort::open(&XdpConfig::new("nosuchif7"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no interface named `nosuchif7`"), "{e}");
}

#[test]
fn account_arithmetic() {
    let a = FrameAccount {
        total: 10,
        free: 3,
        fill_ring: 2,
        in_kernel: 1,
        rx_ring: 1,
        tx_ring: 1,
        completion_ring: 1,
        held: 1,
    };
    assert_eq!(a.missing(), 0);
    assert_eq!(FrameAccount { held: 0, ..a }.missing(), 1);
}

#[test]
fn sizes() {
    assert_eq!(std::mem::size_of::<XdpBuf>(), 24);
    assert_eq!(std::mem::size_of::<XdpDesc>(), 16);
}
