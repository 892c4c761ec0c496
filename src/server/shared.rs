//! What the threads of one server share: its name and start time, the shutdown flag, the
//! counters ([`Stats`]), the hand-off to the writer ([`Handoff`]: mailboxes, sequence counter,
//! pending-bytes gauge), the input budget, the loops' balance and the connection registry's
//! board (`apps::connections`).
//!
//! Each part lives in the room its path names; this only bundles them behind one `Arc` for the
//! loops. The writer gets only the parts it uses (the hand-off and the counters), so storage
//! never imports the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::balance::Balance;
use super::budget::InputBudget;
use super::tls::Tls;
use super::traffic::TrafficBoard;
use crate::apps::connections::Board;
use crate::apps::gate::Gate;
use crate::config::Config;
use crate::protocol::grpc_web::Cors;
use crate::stats::Stats;
use crate::storage::mailbox::{Handoff, Mailbox};

pub struct Shared {
    name: String,
    started: Instant,
    shutdown: AtomicBool,
    stats: Arc<Stats>,
    handoff: Arc<Handoff>,
    /// Unfinished input held by the loops' connections (`--max-input`).
    input: InputBudget,
    balance: Balance,
    /// Each loop's published connections, for `status` and `health`.
    connections: Board,
    /// What a connection's token decides (`--auth`); asked once per connection or gRPC call.
    gate: Gate,
    /// Each loop's published traffic, for `/metrics` (`server::traffic`).
    traffic: TrafficBoard,
    /// The pages allowed to call gRPC-Web from a browser (`--cors-origin`), for gRPC-Web calls
    /// over h2 (the HTTP/1.1 side has its own copy in `session::http::web::Web`).
    cors: Cors,
    /// What a new connection's TLS is made of (`--tls-cert`), reloaded at `SIGHUP`.
    tls: Tls,
    /// The forwarders' figures (`--forward`), for `health`, `/metrics` and `status`.
    forward: Arc<crate::forward::Status>,
}

impl Shared {
    /// The state of a server named `name` whose loops hand off through `handoff` (one mailbox
    /// per loop) and count in `stats`; the input budget is the default until
    /// [`with_max_input`](Self::with_max_input), and the gate lets the app a client names choose
    /// its bucket ([`Gate::off`]) until [`with_gate`](Self::with_gate).
    pub fn new(name: String, handoff: Arc<Handoff>, stats: Arc<Stats>) -> Self {
        let loops = handoff.loops();
        Shared {
            name,
            started: Instant::now(),
            shutdown: AtomicBool::new(false),
            input: InputBudget::new(Config::default().max_input, loops, stats.clone()),
            stats,
            handoff,
            balance: Balance::new(loops),
            connections: Board::new(loops),
            gate: Gate::off(),
            traffic: TrafficBoard::new(loops),
            cors: Cors::default(),
            tls: Tls::off(),
            forward: Arc::default(),
        }
    }

    /// Sets the TLS every TCP port speaks (`server::tls`); plain until then.
    pub fn with_tls(mut self, tls: Tls) -> Self {
        self.tls = tls;
        self
    }

    pub fn tls(&self) -> &Tls {
        &self.tls
    }

    /// Sets the forwarders' figures (`--forward`); none until then.
    pub fn with_forward(mut self, forward: Arc<crate::forward::Status>) -> Self {
        self.forward = forward;
        self
    }

    pub fn forward(&self) -> &crate::forward::Status {
        &self.forward
    }

    pub fn forward_status(&self) -> Arc<crate::forward::Status> {
        self.forward.clone()
    }

    /// Sets the origins allowed to call gRPC-Web over h2 (`--cors-origin`); none until then.
    pub fn with_cors(mut self, cors: Cors) -> Self {
        self.cors = cors;
        self
    }

    pub fn cors(&self) -> &Cors {
        &self.cors
    }

    /// Sets the gate connections go through (`--auth`, the secret, the token registry).
    pub fn with_gate(mut self, gate: Gate) -> Self {
        self.gate = gate;
        self
    }

    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Sets the input budget to `max_input` bytes (`--max-input`), shared by the loops.
    pub fn with_max_input(mut self, max_input: usize) -> Self {
        self.input = InputBudget::new(max_input, self.handoff.loops(), self.stats.clone());
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn handoff(&self) -> &Handoff {
        &self.handoff
    }

    /// Loop `id`'s mailbox.
    pub fn mailbox(&self, id: usize) -> &Mailbox {
        self.handoff.mailbox(id)
    }

    /// The budget for unfinished input: what the loops hold, and who sheds.
    pub fn input(&self) -> &InputBudget {
        &self.input
    }

    pub fn balance(&self) -> &Balance {
        &self.balance
    }

    /// Who is connected, as the loops last published it.
    pub fn connections(&self) -> &Board {
        &self.connections
    }

    /// True while the loops should not read more from sockets.
    /// Each loop's traffic, as last published, for `/metrics`.
    pub fn traffic(&self) -> &TrafficBoard {
        &self.traffic
    }

    pub fn pending_full(&self) -> bool {
        self.handoff.pending().is_full()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// Starts the shutdown: every loop stops accepting, stores what it has received and exits.
    pub fn begin_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        for mailbox in self.handoff.mailboxes() {
            mailbox.wake();
        }
    }
}
