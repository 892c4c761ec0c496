//! The connection registry: who is connected, answered to `logmill status` (JSON) and counted in
//! the `health` line.
//!
//! # Who keeps what
//!
//! ```text
//! loop 0: its connections, each with an Entry   ──publish (≤ every 250 ms)──> Board[0]  (Mutex)
//! loop 1: ...                                    ──publish──────────────────> Board[1]
//!                                                 status / health request ──> rows() ──> status_json
//! ```
//!
//! - Each connection carries its own [`Entry`] (app, instance, protocol, when it connected, its
//!   records and bytes, its last record), owned by its event loop like the rest of the
//!   connection. The record path bumps it with plain integer adds ([`Entry::received`],
//!   [`Entry::read`]): no lock, no atomic, no allocation per record.
//! - A loop copies its entries into its slot of the [`Board`] (one `Mutex` per loop) when
//!   something changed (a connection came or went, bytes were read), at most every
//!   [`PUBLISH_EVERY`]. Only the publishing loop and a reader ever take that lock, and never on
//!   the record path. A connection shows up (and disappears) in `status` within that time.
//! - A `status` request (or `health`) reads every slot ([`Board::rows`]) and merges them into the
//!   JSON of issue 10 ([`status_json`], a pure function).
//!
//! # The JSON
//!
//! ```json
//! {"billing": {"running_instances": 2, "instances": {
//!    "pod-7": {"socket": "native", "connected_at": "2026-12-01T10:00:00Z", "connections": 3,
//!              "peer": "10.0.0.7:51234", "records": 120034, "bytes": 25103122,
//!              "last_record_at": "2026-12-01T10:04:31Z"}}},
//!  "_anonymous": {...}}
//! ```
//!
//! - Apps in name order, then `_anonymous` (connections that name no app); instances in name
//!   order. An app name never starts with `_` (`storage::bucket::valid_app_name`), so neither
//!   `_anonymous` nor `_truncated` can be an app.
//! - An instance is what the connection named (`hello.instance`, gRPC `logmill-instance`) or,
//!   when it named none, the peer's IP address (so an anonymous syslog sender is its host).
//! - An instance with several connections: `connections` counts them, `records` and `bytes` are
//!   summed, `socket`, `peer` and `connected_at` are the earliest connection's, and
//!   `last_record_at` the latest record's (`null` before the first).
//! - `bytes` are the bytes received from the client: everything read from a TCP connection
//!   (frame headers and hello included), the request message bytes of a gRPC connection's calls
//!   (HTTP/2 framing and headers not counted).
//! - Times are UTC, to the second.
//! - A gRPC connection is listed under the app and instance of its latest `Push` or `PushStream`
//!   call (a connection whose calls name different apps moves to the latest); its records and
//!   bytes are those of all its calls. Before its first push call it is anonymous.
//! - Connections still being detected, and UDP datagrams (no connection), are not listed.
//! - Bounded: past `max_bytes` of JSON the rest is left out and counted in
//!   `"_truncated": {"instances": N, "connections": M}`, so the answer stays valid JSON.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::protocol::detect::Protocol;
use crate::storage::line::Origin;

/// How often a loop publishes its entries while they change: the most `status` lags behind.
/// Publishing copies the loop's entries (about 100 bytes each, and two reference counts), so
/// 10,000 busy connections cost a loop about a millisecond every 250 ms.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// The most a `status` answer holds: the same as the output a TCP connection may leave unread
/// before it is closed as a slow reader (`server::connection`), so a client that does not read
/// its answer holds no more memory than one that does not read its acks. About 5,000 instances.
pub const MAX_STATUS_BYTES: usize = 1024 * 1024;

/// The bytes kept free under the cap for the `_truncated` marker and the closing braces.
const TRUNCATION_RESERVE: usize = 128;

/// A connection's protocol, as `status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socket {
    Native,
    Grpc,
    Pickle,
    Syslog,
    Jsonl,
    Text,
    /// Upgraded from HTTP/1.1 (`GET /v1/ws`), not picked by detection.
    WebSocket,
    /// An HTTP/1.1 connection that made a gRPC-Web call.
    GrpcWeb,
    /// An HTTP/1.1 connection that posted OTLP logs (`POST /v1/logs`).
    OtlpHttp,
}

impl Socket {
    /// The protocol a TCP connection's first bytes picked; `None` for the one-shot answers
    /// (`health`, `status`, unknown bytes), which are not listed.
    pub fn of(protocol: Protocol) -> Option<Socket> {
        match protocol {
            Protocol::Native => Some(Socket::Native),
            Protocol::Pickle => Some(Socket::Pickle),
            Protocol::Syslog => Some(Socket::Syslog),
            Protocol::JsonLines => Some(Socket::Jsonl),
            Protocol::Text => Some(Socket::Text),
            Protocol::Health | Protocol::Status | Protocol::Unknown => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Socket::Native => "native",
            Socket::Grpc => "grpc",
            Socket::Pickle => "pickle",
            Socket::Syslog => "syslog",
            Socket::Jsonl => "jsonl",
            Socket::Text => "text",
            Socket::WebSocket => "websocket",
            Socket::GrpcWeb => "grpc-web",
            Socket::OtlpHttp => "otlp-http",
        }
    }
}

/// What one connection shows in `status`. Kept in the connection and owned by its loop.
///
/// Small on purpose (72 bytes on 64-bit targets): the app is the connection's `Origin` bucket
/// name, shared (`Arc`), the instance one shared string made when the connection names it, and
/// the rest plain integers. The peer is not here: the connection has it, and adds it when it is
/// published ([`Row`]).
#[derive(Debug, Clone)]
pub struct Entry {
    /// `None`: anonymous.
    app: Option<Arc<str>>,
    /// `None`: the connection named none (the peer's IP address stands in).
    instance: Option<Arc<str>>,
    connected_at_ns: u64,
    /// 0 before the first record.
    last_record_ns: u64,
    records: u64,
    bytes: u64,
    /// `None` until detection picked a protocol: not listed yet.
    socket: Option<Socket>,
}

impl Entry {
    /// A connection accepted now, speaking `socket` (`None`: not known yet).
    pub fn accepted(socket: Option<Socket>) -> Entry {
        Entry {
            app: None,
            instance: None,
            connected_at_ns: unix_ns(SystemTime::now()),
            last_record_ns: 0,
            records: 0,
            bytes: 0,
            socket,
        }
    }

    /// Detection decided the protocol.
    pub fn set_socket(&mut self, socket: Option<Socket>) {
        self.socket = socket;
    }

    /// The connection's records now carry `origin`: list it under its app and instance. The
    /// instance string is made once, and kept while the name stays the same.
    pub fn set_origin(&mut self, origin: &Origin) {
        self.app = origin.bucket().cloned();
        let name = origin.instance();
        if name.is_empty() {
            self.instance = None;
        } else if self.instance.as_deref() != Some(name) {
            self.instance = Some(Arc::from(name));
        }
    }

    /// `records` more records arrived, at `now_ns` (the record path: two adds and a store).
    #[inline]
    pub fn received(&mut self, records: u64, now_ns: u64) {
        self.records += records;
        self.last_record_ns = now_ns;
    }

    /// `bytes` more bytes were read from the client.
    #[inline]
    pub fn read(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
    }

    /// Its app (`None`: anonymous), for the metrics' per-app counts.
    pub fn app(&self) -> Option<&Arc<str>> {
        self.app.as_ref()
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Its protocol, once known.
    pub fn socket(&self) -> Option<Socket> {
        self.socket
    }

    /// Whether `status` lists it (its protocol is known).
    pub fn listed(&self) -> bool {
        self.socket.is_some()
    }

    /// The published form, with the connection's `peer`; `None` while not listed.
    pub fn row(&self, peer: SocketAddr) -> Option<Row> {
        self.listed().then(|| Row {
            entry: self.clone(),
            peer,
        })
    }
}

/// One connection as published: its [`Entry`] and peer.
#[derive(Debug, Clone)]
pub struct Row {
    entry: Entry,
    peer: SocketAddr,
}

impl Row {
    /// The connection's entry as its loop last published it.
    pub fn entry(&self) -> &Entry {
        &self.entry
    }
}

/// Every loop's published rows: one slot (a `Mutex`) per loop, taken by that loop when it
/// publishes and by `status`/`health` readers, never on the record path.
#[derive(Debug)]
pub struct Board {
    loops: Vec<Mutex<Vec<Row>>>,
}

/// Counts for the `health` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Apps with at least one listed connection (not counting `_anonymous`).
    pub apps: usize,
    /// Instances over all apps, `_anonymous` included.
    pub instances: usize,
    /// Listed connections.
    pub connections: usize,
}

impl Board {
    pub fn new(loops: usize) -> Board {
        Board {
            loops: (0..loops).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }

    /// Replaces loop `id`'s rows. The slot's buffer is reused, so a steady loop allocates
    /// nothing here.
    pub fn publish(&self, id: usize, rows: impl Iterator<Item = Row>) {
        let Some(slot) = self.loops.get(id) else {
            return;
        };
        // A reader that panicked cannot have left the rows half-made: they are replaced whole.
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        slot.clear();
        slot.extend(rows);
    }

    /// Every loop's rows, copied (the locks are held one at a time, each for a copy).
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for slot in &self.loops {
            let slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
            rows.extend(slot.iter().cloned());
        }
        rows
    }

    /// Apps, instances and connections listed now. For `health`, which probes ask often: the
    /// rows are counted in place (no copy, no string made), each slot locked in turn.
    pub fn counts(&self) -> Counts {
        /// An instance: the name it gave, or its peer's IP address.
        #[derive(PartialEq, Eq, Hash)]
        enum Name {
            Given(Arc<str>),
            Ip(std::net::IpAddr),
        }
        let mut apps = HashSet::new();
        let mut instances = HashSet::new();
        let mut connections = 0;
        for slot in &self.loops {
            let slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
            for row in slot.iter().filter(|row| row.entry.listed()) {
                connections += 1;
                let app = row.entry.app.clone();
                if let Some(app) = &app {
                    apps.insert(app.clone());
                }
                let name = match &row.entry.instance {
                    Some(name) => Name::Given(name.clone()),
                    None => Name::Ip(row.peer.ip()),
                };
                instances.insert((app, name));
            }
        }
        Counts {
            apps: apps.len(),
            instances: instances.len(),
            connections,
        }
    }
}

/// One instance's connections merged (see the module doc for the rules).
#[derive(Debug)]
struct Instance {
    socket: Socket,
    peer: SocketAddr,
    connected_at_ns: u64,
    connections: u64,
    records: u64,
    bytes: u64,
    last_record_ns: u64,
}

/// Rows grouped by app (`None`: anonymous) and instance name.
type Groups<'a> = BTreeMap<Option<&'a str>, BTreeMap<std::borrow::Cow<'a, str>, Instance>>;

fn group(rows: &[Row]) -> Groups<'_> {
    let mut groups: Groups<'_> = BTreeMap::new();
    for row in rows {
        let e = &row.entry;
        let Some(socket) = e.socket else {
            continue;
        };
        let name = match &e.instance {
            Some(name) => std::borrow::Cow::Borrowed(&**name),
            None => std::borrow::Cow::Owned(row.peer.ip().to_string()),
        };
        let instances = groups.entry(e.app.as_deref()).or_default();
        let merged = instances.entry(name).or_insert(Instance {
            socket,
            peer: row.peer,
            connected_at_ns: e.connected_at_ns,
            connections: 0,
            records: 0,
            bytes: 0,
            last_record_ns: 0,
        });
        if (e.connected_at_ns, row.peer) < (merged.connected_at_ns, merged.peer) {
            merged.socket = socket;
            merged.peer = row.peer;
            merged.connected_at_ns = e.connected_at_ns;
        }
        merged.connections += 1;
        merged.records += e.records;
        merged.bytes += e.bytes;
        merged.last_record_ns = merged.last_record_ns.max(e.last_record_ns);
    }
    groups
}

/// The `status` JSON for `rows` (module doc), at most `max_bytes` long (at least
/// [`TRUNCATION_RESERVE`] is assumed; [`MAX_STATUS_BYTES`] on the server).
pub fn status_json(rows: &[Row], max_bytes: usize) -> String {
    let groups = group(rows);
    let budget = max_bytes.saturating_sub(TRUNCATION_RESERVE);
    // `_anonymous` after the apps (None sorts first in the map).
    let ordered = groups
        .iter()
        .filter(|(app, _)| app.is_some())
        .chain(groups.iter().filter(|(app, _)| app.is_none()));
    let mut out = String::from("{");
    let mut left_out = (0u64, 0u64);
    let mut truncated = false;
    let mut item = String::new();
    for (app, instances) in ordered {
        let mut head = String::new();
        if out.len() > 1 {
            head.push(',');
        }
        head.push_str(&json_string(app.unwrap_or("_anonymous")));
        head.push_str(&format!(
            ":{{\"running_instances\":{},\"instances\":{{",
            instances.len()
        ));
        // Room for the head, and for closing the app (`}}`) after it.
        if truncated || out.len() + head.len() + 2 > budget {
            truncated = true;
            left_out.0 += instances.len() as u64;
            left_out.1 += instances.values().map(|i| i.connections).sum::<u64>();
            continue;
        }
        out.push_str(&head);
        let mut first = true;
        for (name, instance) in instances {
            item.clear();
            if !first {
                item.push(',');
            }
            write_instance(&mut item, name, instance);
            if truncated || out.len() + item.len() + 2 > budget {
                truncated = true;
                left_out.0 += 1;
                left_out.1 += instance.connections;
                continue;
            }
            out.push_str(&item);
            first = false;
        }
        out.push_str("}}");
    }
    if truncated {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&format!(
            "\"_truncated\":{{\"instances\":{},\"connections\":{}}}",
            left_out.0, left_out.1
        ));
    }
    out.push('}');
    out
}

/// `"name":{...}` for one instance.
fn write_instance(out: &mut String, name: &str, i: &Instance) {
    let last = if i.last_record_ns == 0 {
        "null".to_string()
    } else {
        format!("\"{}\"", rfc3339(i.last_record_ns))
    };
    out.push_str(&format!(
        "{}:{{\"socket\":\"{}\",\"connected_at\":\"{}\",\"connections\":{},\"peer\":\"{}\",\
         \"records\":{},\"bytes\":{},\"last_record_at\":{last}}}",
        json_string(name),
        i.socket.as_str(),
        rfc3339(i.connected_at_ns),
        i.connections,
        i.peer,
        i.records,
        i.bytes,
    ));
}

/// `s` as a JSON string, quoted and escaped (`serde_json`'s escaping).
fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// `2026-12-01T10:00:00Z`: UTC to the second.
fn rfc3339(ns: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp((ns / 1_000_000_000) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&fmt).unwrap_or_default()
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const T0: u64 = 1_795_000_000_000_000_000; // 2026-11-18T11:06:40Z

    fn row(app: &str, instance: &str, socket: Socket, peer: &str, at_s: u64) -> Row {
        let origin = Origin::new(app.into(), instance.into());
        let mut entry = Entry::accepted(Some(socket));
        entry.connected_at_ns = T0 + at_s * 1_000_000_000;
        entry.set_origin(&origin);
        Row {
            entry,
            peer: peer.parse().unwrap(),
        }
    }

    fn parse(rows: &[Row]) -> Value {
        let text = status_json(rows, MAX_STATUS_BYTES);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    #[test]
    fn the_entry_stays_small() {
        assert!(
            std::mem::size_of::<Entry>() <= 72,
            "{}",
            std::mem::size_of::<Entry>()
        );
    }

    #[test]
    fn the_shape_of_the_issue() {
        let mut rows = vec![
            row("billing", "pod-7", Socket::Native, "10.0.0.7:51234", 0),
            row("billing", "pod-7", Socket::Native, "10.0.0.7:51235", 5),
            row("billing", "pod-8", Socket::Grpc, "10.0.0.8:40000", 1),
            row("", "", Socket::Syslog, "10.0.0.9:514", 2),
        ];
        rows[0].entry.received(10, T0 + 20_000_000_000);
        rows[0].entry.read(100);
        rows[1].entry.received(5, T0 + 30_000_000_000);
        rows[1].entry.read(50);
        let status = parse(&rows);
        assert_eq!(
            status,
            json!({
                "billing": {"running_instances": 2, "instances": {
                    "pod-7": {"socket": "native", "connected_at": "2026-11-18T11:06:40Z",
                              "connections": 2, "peer": "10.0.0.7:51234", "records": 15,
                              "bytes": 150, "last_record_at": "2026-11-18T11:07:10Z"},
                    "pod-8": {"socket": "grpc", "connected_at": "2026-11-18T11:06:41Z",
                              "connections": 1, "peer": "10.0.0.8:40000", "records": 0,
                              "bytes": 0, "last_record_at": null}}},
                "_anonymous": {"running_instances": 1, "instances": {
                    "10.0.0.9": {"socket": "syslog", "connected_at": "2026-11-18T11:06:42Z",
                                 "connections": 1, "peer": "10.0.0.9:514", "records": 0,
                                 "bytes": 0, "last_record_at": null}}}
            })
        );
        // Apps in name order, `_anonymous` last; fields in the issue's order.
        let text = status_json(&rows, MAX_STATUS_BYTES);
        assert!(
            text.starts_with("{\"billing\":{\"running_instances\":2,"),
            "{text}"
        );
        assert!(text.contains("\"pod-7\":{\"socket\":\"native\",\"connected_at\""));
        assert!(text.find("billing") < text.find("_anonymous"));
    }

    /// The earliest connection gives socket, peer and connected_at, whatever the order.
    #[test]
    fn earliest_connection_names_the_instance() {
        let rows = [
            row("a", "i", Socket::Text, "10.0.0.2:2", 9),
            row("a", "i", Socket::Native, "10.0.0.1:1", 3),
        ];
        let status = parse(&rows);
        let i = &status["a"]["instances"]["i"];
        assert_eq!(i["socket"], "native");
        assert_eq!(i["peer"], "10.0.0.1:1");
        assert_eq!(i["connections"], 2);
    }

    /// Names from the wire are escaped: quotes, backslashes, control bytes.
    #[test]
    fn hostile_instance_names_stay_json() {
        let rows = [row("a", "x\"y\\z\n\u{1}", Socket::Native, "[::1]:7", 0)];
        let status = parse(&rows);
        assert_eq!(
            status["a"]["instances"]["x\"y\\z\n\u{1}"]["peer"],
            "[::1]:7"
        );
    }

    #[test]
    fn nothing_connected_is_an_empty_object() {
        assert_eq!(status_json(&[], MAX_STATUS_BYTES), "{}");
        let mut unlisted = row("a", "i", Socket::Native, "10.0.0.1:1", 0);
        unlisted.entry.set_socket(None);
        assert_eq!(status_json(&[unlisted], MAX_STATUS_BYTES), "{}");
    }

    /// Past the cap the rest is counted, not shown, and the answer is still JSON.
    #[test]
    fn truncated_at_the_cap_and_still_valid() {
        let rows: Vec<Row> = (0..200)
            .map(|i| {
                row(
                    &format!("app{:03}", i / 10),
                    &format!("pod-{i}"),
                    Socket::Native,
                    "10.0.0.1:1",
                    i,
                )
            })
            .collect();
        let whole = status_json(&rows, usize::MAX);
        for cap in [200, 1000, 5000, whole.len() - 1] {
            let text = status_json(&rows, cap);
            assert!(text.len() <= cap, "{} > {cap}", text.len());
            let status: Value = serde_json::from_str(&text).unwrap();
            let shown: u64 = status
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| *k != "_truncated")
                .map(|(_, app)| app["instances"].as_object().unwrap().len() as u64)
                .sum();
            let left = status["_truncated"]["instances"].as_u64().unwrap();
            assert_eq!(shown + left, 200, "cap {cap}");
            assert_eq!(status["_truncated"]["connections"].as_u64().unwrap(), left);
        }
        assert!(!whole.contains("_truncated"));
    }

    #[test]
    fn the_board_merges_loops_and_counts() {
        let board = Board::new(2);
        board.publish(
            0,
            [
                row("a", "1", Socket::Native, "10.0.0.1:1", 0),
                row("b", "1", Socket::Native, "10.0.0.1:2", 0),
            ]
            .into_iter(),
        );
        board.publish(
            1,
            [
                row("a", "2", Socket::Grpc, "10.0.0.2:1", 0),
                row("", "", Socket::Text, "10.0.0.3:1", 0),
                // The same anonymous host again: one instance, two connections.
                row("", "", Socket::Syslog, "10.0.0.3:2", 0),
            ]
            .into_iter(),
        );
        let counts = board.counts();
        assert_eq!(
            counts,
            Counts {
                apps: 2,
                instances: 4,
                connections: 5
            }
        );
        let status: Value = serde_json::from_str(&status_json(&board.rows(), 4096)).unwrap();
        let listed: usize = status
            .as_object()
            .unwrap()
            .values()
            .map(|app| app["instances"].as_object().unwrap().len())
            .sum();
        assert_eq!(listed, counts.instances, "health and status agree");
        board.publish(1, std::iter::empty());
        assert_eq!(board.counts().connections, 2);
        assert_eq!(board.rows().len(), 2);
    }

    #[test]
    fn a_new_instance_name_replaces_the_old() {
        let mut entry = Entry::accepted(Some(Socket::Native));
        entry.set_origin(&Origin::new("a".into(), "x".into()));
        let first = entry.instance.clone().unwrap();
        entry.set_origin(&Origin::new("a".into(), "x".into()));
        assert!(
            Arc::ptr_eq(&first, entry.instance.as_ref().unwrap()),
            "kept"
        );
        entry.set_origin(&Origin::new("b".into(), "y".into()));
        assert_eq!(entry.instance.as_deref(), Some("y"));
        assert_eq!(entry.app.as_deref(), Some("b"));
    }
}
