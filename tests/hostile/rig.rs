//! The hostile suite's rig: a server and a client stack over the mem
//! wire with a frame injector, and the applications the tests drive.

use super::*;

/// Echoes everything; counts short sends and writable events.
#[derive(Default)]
pub struct Echo {
    pub short_sends: usize,
    pub writable: usize,
}
impl TcpApp for Echo {
    type Conn = Vec<u8>;
    fn on_open(&mut self, _: &mut Conn<'_>) -> Vec<u8> {
        Vec::new()
    }
    fn on_data(&mut self, pend: &mut Vec<u8>, c: &mut Conn<'_>, d: &[u8]) -> usize {
        // Echo with our own back-pressure: keep what did not fit.
        if !pend.is_empty() {
            return 0;
        }
        let n = c.send(d);
        if n < d.len() {
            self.short_sends += 1;
        }
        n
    }
    fn on_writable(&mut self, _: &mut Vec<u8>, _: &mut Conn<'_>) {
        self.writable += 1;
    }
}

/// Keeps `conc` connections doing one request/response each, `want` in
/// all: connect, send `req` bytes, read them back, close.
pub struct Churn {
    pub want: usize,
    pub conc: usize,
    pub req: usize,
    pub issued: usize,
    pub active: usize,
    pub ok: usize,
    pub failed: usize,
    pub reset: usize,
    pub bad: usize,
    /// Keep connections open after their echo (until `hold` is cleared).
    pub hold: bool,
    pub held: Vec<ConnId>,
    /// The server's address (IPv4 unless set).
    pub to: SocketAddr,
}

impl Churn {
    pub fn new(want: usize, conc: usize, req: usize) -> Self {
        Churn {
            want,
            conc,
            req,
            issued: 0,
            active: 0,
            ok: 0,
            failed: 0,
            reset: 0,
            bad: 0,
            hold: false,
            held: Vec::new(),
            to: SocketAddrV4::new(SERVER, PORT).into(),
        }
    }

    /// The same, to the server's IPv6 address.
    pub fn v6(mut self) -> Self {
        self.to = SocketAddr::from((SERVER6, PORT));
        self
    }
    pub fn finished(&self) -> usize {
        self.ok + self.failed + self.reset
    }
}

pub fn byte(i: usize) -> u8 {
    (i * 131 + 7) as u8
}

impl TcpApp for Churn {
    type Conn = (usize, usize);
    fn on_open(&mut self, c: &mut Conn<'_>) -> (usize, usize) {
        let msg: Vec<u8> = (0..self.req).map(byte).collect();
        let sent = c.send(&msg);
        (sent, 0)
    }
    fn on_data(&mut self, st: &mut (usize, usize), c: &mut Conn<'_>, d: &[u8]) -> usize {
        for (i, b) in d.iter().enumerate() {
            if *b != byte(st.1 + i) {
                self.bad += 1;
            }
        }
        st.1 += d.len();
        if st.1 >= self.req {
            if self.hold {
                self.held.push(c.id());
            } else {
                c.close();
            }
        }
        d.len()
    }
    fn on_writable(&mut self, st: &mut (usize, usize), c: &mut Conn<'_>) {
        let msg: Vec<u8> = (st.0..self.req).map(byte).collect();
        st.0 += c.send(&msg);
    }
    fn on_close(&mut self, st: (usize, usize), r: CloseReason) {
        self.active -= 1;
        if r == CloseReason::Normal && st.1 == self.req {
            self.ok += 1;
        } else {
            self.reset += 1;
        }
    }
    fn on_connect_failed(&mut self, _: ConnId) {
        self.active -= 1;
        self.failed += 1;
    }
    fn poll(&mut self, ctx: &mut Ctx<'_>) -> usize {
        let mut n = 0;
        if !self.hold {
            for id in self.held.drain(..) {
                ctx.conn(id).close();
                n += 1;
            }
        }
        while self.active < self.conc && self.issued < self.want {
            if ctx.connect(self.to).is_err() {
                break;
            }
            self.issued += 1;
            self.active += 1;
            n += 1;
        }
        n
    }
}

/// The crate's test driver ([`Pair`], which it derefs to) and the
/// injector's shared state.
pub struct Rig<C: TcpApp> {
    pub pair: Pair<Inject, Inject, Echo, C>,
    pub sh: Arc<Mutex<Shared>>,
}

impl<C: TcpApp> std::ops::Deref for Rig<C> {
    type Target = Pair<Inject, Inject, Echo, C>;
    fn deref(&self) -> &Self::Target {
        &self.pair
    }
}

impl<C: TcpApp> std::ops::DerefMut for Rig<C> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.pair
    }
}

pub struct Setup {
    pub lopts: ListenOpts,
    pub max_conns: usize,
    pub ring: usize,
    pub frames: u32,
    pub faults: Faults,
    pub client_tcp: TcpOpts,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            lopts: ListenOpts::default(),
            max_conns: 1 << 20,
            ring: 1024,
            frames: 4096,
            faults: Faults::default(),
            client_tcp: TcpOpts {
                timeout_ms: 3000,
                ..Default::default()
            },
        }
    }
}

pub fn rig<C: TcpApp>(s: Setup, client: C) -> Rig<C> {
    let (mut a, mut b) = MemPort::pair(&MemConfig {
        ring_size: s.ring,
        pool_frames: s.frames,
        faults_ab: s.faults,
        faults_ba: Faults {
            seed: s.faults.seed ^ 0xabc,
            ..s.faults
        },
        ..Default::default()
    })
    .unwrap();
    let (ia, ib) = (a.info().clone(), b.info().clone());
    let (qa, sh) = Inject::new(a.take_queues().pop().unwrap());
    let mut sc = StackConfig::new(SERVER, 24).with_addr(SERVER6.into(), 64);
    sc.max_conns = s.max_conns;
    let mut st = Stack::new(qa, &ia, sc, Instant(0)).unwrap();
    st.listen(PORT, s.lopts).unwrap();
    let mut cc = StackConfig::new(CLIENT, 24).with_addr(CLIENT6.into(), 64);
    cc.connect = s.client_tcp;
    let (qb, _) = Inject::new(b.take_queues().pop().unwrap());
    let c = Stack::new(qb, &ib, cc, Instant(0)).unwrap();
    Rig {
        pair: Pair::new(
            TcpWorker::new(st, Echo::default()),
            TcpWorker::new(c, client),
        ),
        sh,
    }
}

impl<C: TcpApp> Rig<C> {
    pub fn inject(&self, f: Vec<u8>) {
        self.sh.lock().unwrap().inject.push_back(f);
    }
    pub fn take_sent(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.sh.lock().unwrap().sent)
    }
    pub fn record(&self, on: bool) {
        self.sh.lock().unwrap().record = on;
    }
    /// Lets every connection finish and every timer run out (the
    /// injector hoarding nothing), then checks for leaks
    /// ([`Pair::settle_and_check_leaks`]).
    pub fn settle_and_check_leaks(&mut self) {
        self.sh.lock().unwrap().hoard_target = 0;
        self.pair.settle_and_check_leaks();
    }
}
