//! Listeners: a SYN for a listening port with no connection becomes a
//! fresh connection in the handshake, counted against the listener's
//! backlog until it completes; beyond the backlog the listener's policy
//! applies (drop, reset, evict the oldest half-open, or a SYN cookie).

use std::collections::VecDeque;

use super::classify::TcpKey;
use super::{BacklogFull, ListenOpts, Stack, TcpEngine};
use crate::error::{Error, Result};
use crate::port::PortQueue;

pub(super) struct Listener {
    pub opts: ListenOpts,
    /// The bypass engine's settings for this listener (index in the
    /// core's table of settings).
    pub cfg: u16,
    /// Connections in the handshake.
    pub pending: usize,
    /// Connections that entered the handshake, oldest first, as (slot,
    /// generation); entries whose handshake has ended are skipped lazily
    /// (used by `BacklogFull::DropOldest`, pruned to stay O(backlog)).
    pub order: VecDeque<(u32, u32)>,
}

impl<Q: PortQueue> Stack<Q> {
    /// Starts listening on `port`.
    pub fn listen(&mut self, port: u16, opts: ListenOpts) -> Result<()> {
        if port == 0 {
            return Err(Error::Config("cannot listen on port 0".into()));
        }
        if opts.backlog == 0 {
            return Err(Error::Config("a backlog of 0 accepts nothing".into()));
        }
        if self.listeners.contains_key(&port) {
            return Err(Error::Config(format!("port {port} is already listening")));
        }
        let cfg = self.own.add_config(&opts.tcp);
        self.listeners.insert(
            port,
            Listener {
                opts,
                cfg,
                pending: 0,
                order: VecDeque::new(),
            },
        );
        Ok(())
    }

    /// A SYN for listening `port` with no connection.
    pub(super) fn accept(&mut self, key: TcpKey, port: u16, buf: Q::Buf) {
        // Invariant: the caller checked that the listener exists.
        let Some(l) = self.listeners.get(&port) else {
            return;
        };
        let (opts, cfg) = (l.opts, l.cfg);
        if l.pending >= opts.backlog {
            self.stats.backlog_full.inc();
            match opts.on_full {
                BacklogFull::Drop => return,
                BacklogFull::Reset => {
                    self.feed_empty(buf);
                    return;
                }
                BacklogFull::Cookie => {
                    if opts.tcp.engine == TcpEngine::Bypass {
                        self.send_cookie(cfg, key, buf);
                    }
                    return;
                }
                BacklogFull::DropOldest => {
                    if !self.evict_oldest(port) {
                        return;
                    }
                }
            }
        }
        if self.conn_count() >= self.cfg.max_conns {
            self.stats.table_full.inc();
            return;
        }
        if let Some(l) = self.listeners.get_mut(&port) {
            l.pending += 1;
        }
        let idx = match opts.tcp.engine {
            TcpEngine::Bypass => self.own_accept(key, port, cfg, buf),
            TcpEngine::Smoltcp => self.smol_accept(key, port, &opts.tcp, buf),
        };
        let Some(idx) = idx else {
            if let Some(l) = self.listeners.get_mut(&port) {
                l.pending -= 1;
            }
            return;
        };
        let gen = self.slots[idx as usize].gen;
        let live = self.slots[idx as usize].conn.is_some();
        let slots = &self.slots;
        if let Some(l) = self.listeners.get_mut(&port) {
            if live {
                l.order.push_back((idx, gen));
            }
            if l.order.len() > 2 * l.opts.backlog + 16 {
                // Drop the entries of handshakes that have ended.
                l.order.retain(|&(i, g)| {
                    let s = &slots[i as usize];
                    s.gen == g && s.conn.as_ref().is_some_and(|c| c.listener.is_some())
                });
            }
        }
    }

    /// Drops the oldest connection of `port`'s listener that is still in
    /// the handshake; false if there is none.
    fn evict_oldest(&mut self, port: u16) -> bool {
        loop {
            let Some((idx, gen)) = self
                .listeners
                .get_mut(&port)
                .and_then(|l| l.order.pop_front())
            else {
                return false;
            };
            let pending = self.slots[idx as usize].gen == gen
                && self.slots[idx as usize]
                    .conn
                    .as_ref()
                    .is_some_and(|c| c.listener == Some(port));
            if pending {
                self.stats.syn_evicted.inc();
                // It goes without a word (no RST: like a lost SYN, the
                // peer's retransmission starts over).
                self.reap(idx);
                return true;
            }
        }
    }
}
