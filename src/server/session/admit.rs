//! Who sends a request that carries its token in headers (gRPC-Web, OTLP/HTTP): the
//! `logmill-app` header checked, the token (`authorization: Bearer TOKEN`) judged by the gate
//! every protocol uses (`server::grpc::admit`), each refusal logged and counted. The caller
//! answers in its protocol's terms.

use std::net::SocketAddr;

use super::Context;
use crate::storage::bucket::valid_app_name;
use crate::storage::line::Origin;
use crate::storage::server_log::count;

/// Why a request was refused; the text is what the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// `logmill-app` is not a valid app name (it names a directory: refused before it is ever
    /// a path).
    App(String),
    /// The token, or its absence, was refused (`--auth`).
    Token(String),
}

/// The origin of the request's records, from `header` (a lookup that ignores case). `who`
/// starts the log lines ("gRPC-Web call"), `answered` says what the client got ("401").
pub fn by_headers<'h>(
    header: impl Fn(&str) -> Option<&'h [u8]>,
    who: &str,
    answered: &str,
    peer: SocketAddr,
    cx: &mut Context<'_>,
) -> Result<Origin, Refused> {
    let text = |name: &str| {
        header(name)
            .map(|v| String::from_utf8_lossy(v).trim().to_owned())
            .unwrap_or_default()
    };
    let app = text("logmill-app");
    if !app.is_empty() && !valid_app_name(&app) {
        let line = format!("logmill-app {app:?} is not [A-Za-z0-9][A-Za-z0-9._-]{{0,63}}");
        cx.log
            .warn(format_args!("{who} from {peer}: refused: {line}"));
        return Err(Refused::App(line));
    }
    let instance = text("logmill-instance");
    crate::server::grpc::admit(header("authorization"), app, instance, cx.shared, peer).map_err(
        |refused| {
            let refusals = cx.shared.stats().count_refused_auth(refused.app.as_deref());
            cx.log.warn(format_args!(
                "{who} from {peer}: {}{}; answered {answered} ({})",
                refused.message,
                refused.detail,
                count(refusals, "refusal")
            ));
            Refused::Token(refused.message)
        },
    )
}
