//! UDP sockets: each in a one-socket `SocketSet` of its own, found by port.

use std::collections::HashMap;
use std::net::SocketAddr;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::wire::IpEndpoint;

use super::device::OneFrame;
use super::{Event, Stack, UdpId, EGRESS_PER_CONN};
use crate::error::{Error, Result};
use crate::port::PortQueue;

struct UdpSock {
    set: SocketSet<'static>,
    handle: SocketHandle,
}

/// The core's UDP sockets.
#[derive(Default)]
pub(super) struct Udp {
    socks: Vec<UdpSock>,
    ports: HashMap<u16, u32>,
    touched: Vec<u32>,
}

impl<Q: PortQueue> Stack<Q> {
    pub(super) fn udp_ingress(&mut self, dst_port: u16, buf: Q::Buf) {
        match self.udp.ports.get(&dst_port) {
            Some(&u) => {
                let s = &mut self.udp.socks[u as usize];
                let mut dev = OneFrame {
                    rx: Some(buf),
                    tx: &mut self.tx,
                    caps: &self.caps,
                };
                self.iface
                    .poll_ingress_single(self.now, &mut dev, &mut s.set);
                if s.set.get::<udp::Socket>(s.handle).can_recv() {
                    self.events.push(Event::UdpReadable(UdpId(u)));
                }
            }
            // No ICMP port unreachable: it quotes the datagram, so it is
            // always 28 bytes longer than what provoked it, which would
            // make us a (small) reflection amplifier.
            None => {
                self.stats.udp_no_port.inc();
                drop(buf);
            }
        }
    }

    pub(super) fn udp_egress(&mut self) {
        for k in 0..self.udp.touched.len() {
            let u = &mut self.udp.socks[self.udp.touched[k] as usize];
            let mut dev = OneFrame {
                rx: None,
                tx: &mut self.tx,
                caps: &self.caps,
            };
            for _ in 0..EGRESS_PER_CONN {
                if self.iface.poll_egress(self.now, &mut dev, &mut u.set)
                    == smoltcp::iface::PollResult::None
                {
                    break;
                }
            }
        }
        self.udp.touched.clear();
    }

    /// Binds a UDP socket to `port` with room for `slots` datagrams of up
    /// to `max_len` bytes each way.
    pub fn udp_bind(&mut self, port: u16, slots: usize, max_len: usize) -> Result<UdpId> {
        if self.udp.ports.contains_key(&port) {
            return Err(Error::Config(format!("UDP port {port} is already bound")));
        }
        let buf = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; slots],
                vec![0; slots * max_len],
            )
        };
        let mut s = udp::Socket::new(buf(), buf());
        s.bind(port)
            .map_err(|e| Error::Config(format!("UDP bind {port}: {e}")))?;
        let mut set = SocketSet::new(Vec::with_capacity(1));
        let handle = set.add(s);
        let id = self.udp.socks.len() as u32;
        self.udp.socks.push(UdpSock { set, handle });
        self.udp.ports.insert(port, id);
        Ok(UdpId(id))
    }

    /// Receives one datagram into `out`: `(length, sender)`.
    pub fn udp_recv(&mut self, id: UdpId, out: &mut [u8]) -> Option<(usize, SocketAddr)> {
        let u = self.udp.socks.get_mut(id.0 as usize)?;
        let s = u.set.get_mut::<udp::Socket>(u.handle);
        let (n, meta) = s.recv_slice(out).ok()?;
        Some((
            n,
            SocketAddr::new(meta.endpoint.addr.into(), meta.endpoint.port),
        ))
    }

    /// Sends one datagram; `false` if the send buffer is full.
    pub fn udp_send(&mut self, id: UdpId, to: SocketAddr, data: &[u8]) -> bool {
        let Some(u) = self.udp.socks.get_mut(id.0 as usize) else {
            return false;
        };
        let s = u.set.get_mut::<udp::Socket>(u.handle);
        let ok = s
            .send_slice(data, IpEndpoint::new(to.ip().into(), to.port()))
            .is_ok();
        if ok && !self.udp.touched.contains(&id.0) {
            self.udp.touched.push(id.0);
        }
        ok
    }
}
