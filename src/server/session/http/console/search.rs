//! The console's log exploration: `GET /api/search`, `/api/counts`, `/api/context` and the live
//! tail `/api/tail`, each a thin edge over `storage::search` (the engine `logmill query` and
//! `logmill tail` use too). The filter is the request's query, as `search::Filter::from_query`
//! reads it (`app`, `instance`, `level`, `logger`, `q`, `phrase`, `field=k=v`, `since`,
//! `until`); `cursor`, `limit`, `buckets`, `bucket`, `seq` and `n` are this file's.
//!
//! # Bounded work on the event loop
//!
//! These run on the loop that read the request, so each reads at most [`SLICE_BYTES`] of the
//! stored files (a few milliseconds) and answers with what it found and a cursor; the page
//! asks again for the next slice. A page of results may so take several requests, and a count
//! over a large store many, but no request holds the loop, and so the other connections, for
//! long. The live tail is a `server::session::events` stream fed by a `search::Follower`,
//! which reads at most 4 MiB per bucket per turn.

use serde_json::{Value, json};

use super::Console;
use crate::protocol::http1::Request;
use crate::server::session::events::{self, Events, Feed};
use crate::server::session::http::answer::Answer;
use crate::server::session::http::routes::Api;
use crate::server::session::{Context, Session, Sink};
use crate::storage::search::{self, Filter, Follower, Page, filter::query_pairs};

/// Bytes of stored files one request may read.
pub const SLICE_BYTES: u64 = 4 * 1024 * 1024;

/// Records per page unless `limit` says (at most `search::MAX_LIMIT`).
const DEFAULT_LIMIT: usize = 100;

/// Histogram buckets unless `buckets` says.
const DEFAULT_BUCKETS: usize = 60;

/// The histogram's span when the filter gives no `since`: the last day.
const DEFAULT_SPAN_NS: u64 = 24 * 3600 * 1_000_000_000;

/// The answer to one of the exploration routes (the guard has let the request through).
pub fn answer(
    api: Api,
    request: &Request<'_>,
    console: &Console,
    sink: &mut Sink<'_>,
    cx: &mut Context<'_>,
) -> Answer {
    let query = request.query.unwrap_or("");
    let result = match api {
        Api::Search => search_page(console, query),
        Api::Counts => counts(console, query),
        Api::Context => context(console, query),
        Api::Tail => return tail(console, query, sink, cx),
        _ => Err((404, format!("no such API path: {}", request.path))),
    };
    match result {
        Ok(value) => super::reply::json(200, "OK", &value),
        Err((status, message)) => {
            cx.log.warn(format_args!(
                "console: {} {} from {}: {status}: {message}",
                request.method,
                request.path,
                sink.peer()
            ));
            let reason = if status == 400 {
                "Bad Request"
            } else {
                "Internal Server Error"
            };
            super::reply::json(status, reason, &json!({ "error": message }))
        }
    }
}

type Refused = (u16, String);

/// The request's parameters: the filter's and the others by name.
struct Params {
    filter: Filter,
    pairs: Vec<(String, String)>,
}

impl Params {
    fn parse(query: &str) -> Result<Params, Refused> {
        let pairs = query_pairs(query).map_err(|e| (400, e))?;
        let filter =
            Filter::from_pairs(pairs.clone(), search::filter::now_ns()).map_err(|e| (400, e))?;
        Ok(Params { filter, pairs })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// A number parameter, `default` when absent.
    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, Refused> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|_| (400, format!("`{name}`: {text:?} is not a number"))),
        }
    }
}

/// A search error: a bad cursor is the client's (400), a read error the server's (500).
fn refused(e: &search::Error) -> Refused {
    match e {
        search::Error::Cursor(_) => (400, e.to_string()),
        search::Error::Io(_) => (500, e.to_string()),
    }
}

/// `GET /api/search`: `{"records": [hit...], "cursor", "more", "scanned_bytes"}`, newest first.
fn search_page(console: &Console, query: &str) -> Result<Value, Refused> {
    let params = Params::parse(query)?;
    let page = Page {
        cursor: params.get("cursor").map(str::to_owned),
        limit: params.number("limit", DEFAULT_LIMIT)?,
    };
    let results = search::search(&console.dir, &params.filter, &page, SLICE_BYTES)
        .map_err(|e| refused(&e))?;
    Ok(json!({
        "records": results.records.iter().map(search::Hit::to_json).collect::<Vec<_>>(),
        "cursor": results.cursor,
        "more": results.more,
        "scanned_bytes": results.scanned_bytes,
    }))
}

/// `GET /api/counts`: counts by level and a histogram of `buckets` slices from `since` (or a
/// day ago) to `until` (or now), one slice of the files per request.
fn counts(console: &Console, query: &str) -> Result<Value, Refused> {
    let params = Params::parse(query)?;
    let buckets = params.number("buckets", DEFAULT_BUCKETS)?;
    let until = params
        .filter
        .until_ns
        .unwrap_or_else(search::filter::now_ns);
    let since = params
        .filter
        .since_ns
        .unwrap_or_else(|| until.saturating_sub(DEFAULT_SPAN_NS));
    let counts = search::count(
        &console.dir,
        &params.filter,
        params.get("cursor"),
        SLICE_BYTES,
        buckets,
        Some((since, until)),
    )
    .map_err(|e| refused(&e))?;
    let mut value = counts.to_json();
    value["since_ns"] = since.into();
    value["until_ns"] = until.into();
    Ok(value)
}

/// `GET /api/context?bucket=&seq=&n=`: the `n` records before and after `seq` in its bucket.
fn context(console: &Console, query: &str) -> Result<Value, Refused> {
    let params = Params::parse(query)?;
    let bucket = params
        .get("bucket")
        .ok_or_else(|| (400, "`bucket` is required".to_string()))?;
    let seq = params.number("seq", 0u64)?;
    let n = params.number("n", 10usize)?;
    let hits = search::context(&console.dir, bucket, seq, n).map_err(|e| refused(&e))?;
    Ok(json!({ "records": hits.iter().map(search::Hit::to_json).collect::<Vec<_>>() }))
}

/// `GET /api/tail`: the stream of new matching records (`event: record`, the hit's JSON), until
/// the client goes or falls too far behind (`event: notice`).
fn tail(console: &Console, query: &str, sink: &mut Sink<'_>, cx: &mut Context<'_>) -> Answer {
    let params = match Params::parse(query) {
        Ok(params) => params,
        Err((status, message)) => {
            return super::reply::json(status, "Bad Request", &json!({ "error": message }));
        }
    };
    let mut follower = match Follower::new(&console.dir, &params.filter) {
        Ok(follower) => follower,
        Err(e) => {
            let (status, message) = refused(&e);
            return super::reply::json(
                status,
                "Internal Server Error",
                &json!({ "error": message }),
            );
        }
    };
    cx.log.info(format_args!(
        "console: live tail opened from {}",
        sink.peer()
    ));
    let feed: Feed = Box::new(move || {
        follower
            .poll()
            .map(|hits| hits.iter().map(|h| h.to_json().to_string()).collect())
            .map_err(|e| format!("the tail stopped: {e}"))
    });
    let mut answer = super::reply::json(200, "OK", &Value::Null);
    answer.head = Some(events::head(&[]));
    answer.next = Some(Session::Events(Events::new("record", feed)));
    answer
}
