//! The HTTP port's route table: the one place that says which paths exist and which methods
//! each takes. A route names what answers it ([`Route`]); the answering is `server::http`'s.
//!
//! Later routes go here, one line each: `POST /logmill.v1.LogService/Push` and `/LogMessage`
//! (gRPC-Web: a body in, a response out, see `Web::answer`) and `GET /v1/ws` (a WebSocket
//! upgrade: the answer is a `101` and the connection's next session, see
//! `server::session`, "Switching sessions").

/// What answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`: `200 OK` or `503 DEGRADED`.
    Healthz,
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `GET /v1/status`: the connection registry's JSON; admin only.
    Status,
    /// A stand-in upgrade for the tests of the session switch: `101`, then plain text lines.
    #[cfg(test)]
    TestUpgrade,
}

impl Route {
    /// Whether the route needs an admin token (unless `--admin-open`). Everything but health,
    /// metrics and ingestion may show who is connected.
    pub fn admin(self) -> bool {
        matches!(self, Route::Status)
    }
}

/// One row of the table.
struct Entry {
    path: &'static str,
    method: &'static str,
    route: Route,
}

const ROUTES: &[Entry] = &[
    Entry {
        path: "/healthz",
        method: "GET",
        route: Route::Healthz,
    },
    Entry {
        path: "/metrics",
        method: "GET",
        route: Route::Metrics,
    },
    Entry {
        path: "/v1/status",
        method: "GET",
        route: Route::Status,
    },
    #[cfg(test)]
    Entry {
        path: "/test/upgrade",
        method: "GET",
        route: Route::TestUpgrade,
    },
];

/// Why no route matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// No such path: `404`.
    NotFound,
    /// The path exists, not with this method: `405` with `Allow` listing these.
    Method { allow: String },
}

/// The route for `method` on `path`.
///
/// # Errors
/// [`Miss`]: no such path, or not with this method.
pub fn find(method: &str, path: &str) -> Result<Route, Miss> {
    let mut allow: Vec<&str> = Vec::new();
    for entry in ROUTES.iter().filter(|e| e.path == path) {
        if entry.method == method {
            return Ok(entry.route);
        }
        allow.push(entry.method);
    }
    if allow.is_empty() {
        Err(Miss::NotFound)
    } else {
        Err(Miss::Method {
            allow: allow.join(", "),
        })
    }
}

/// The paths that exist, for the `404` line.
pub fn paths() -> String {
    let mut paths: Vec<&str> = ROUTES
        .iter()
        .map(|e| e.path)
        .filter(|p| !p.starts_with("/test/"))
        .collect();
    paths.dedup();
    paths.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_methods_and_misses() {
        assert_eq!(find("GET", "/healthz"), Ok(Route::Healthz));
        assert_eq!(find("GET", "/metrics"), Ok(Route::Metrics));
        assert_eq!(find("GET", "/v1/status"), Ok(Route::Status));
        assert_eq!(find("GET", "/nope"), Err(Miss::NotFound));
        assert_eq!(
            find("POST", "/healthz"),
            Err(Miss::Method {
                allow: "GET".into()
            })
        );
        assert!(Route::Status.admin() && !Route::Healthz.admin() && !Route::Metrics.admin());
        assert_eq!(paths(), "/healthz, /metrics, /v1/status");
    }
}
