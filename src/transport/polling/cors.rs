//! CORS on the polling routes (browsers poll cross-origin), by the same
//! policy as the REST API's ([`crate::transport::cors`]).

use std::net::SocketAddr;

use super::super::cors::CorsHeaders;
use super::super::http::Request;
use super::super::{Endpoint, Response};
use crate::metrics::Refused;

/// The methods of the polling routes, for a preflight.
const METHODS: &str = "GET, POST, OPTIONS";

/// The CORS headers of a polling answer, or the 403 of a refused
/// WebSocket upgrade for an origin `allowed_origins` does not allow
/// (counted and logged as an `origin` refusal).
pub(crate) fn cors(
    req: &Request,
    ep: &Endpoint,
    peer: SocketAddr,
) -> Result<CorsHeaders, Response> {
    let origin = req.header("origin");
    if let Err(r) = ep.origins.check(req) {
        ep.refused(Refused::Origin, peer, || {
            let origin = origin.map(|o| crate::metrics::refusals::quoted(o, 100));
            format!(
                "long-polling request from origin {} (not in ALLOWED_ORIGINS): 403",
                origin.as_deref().unwrap_or("(none)")
            )
        });
        return Err(r);
    }
    Ok(ep.origins.cors_headers(origin))
}

/// The headers of a preflight's 204: the polling routes' methods, the
/// headers the browser asks for, `CORS_MAX_AGE_SECS`.
pub(super) fn preflight(req: &Request, ep: &Endpoint) -> CorsHeaders {
    ep.origins
        .cors_preflight(
            req.header("origin"),
            METHODS,
            req.header("access-control-request-headers"),
        )
        .unwrap_or_default()
}
