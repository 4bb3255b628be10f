//! CORS on the polling routes (browsers poll cross-origin).

use super::super::http::{Request, Response};
use super::super::origin::OriginPolicy;

/// CORS for the polling routes: an allowed `Origin` is echoed (with
/// `Vary: Origin` and credentials, as the reference's `cors` option does),
/// a request without one gets no CORS headers, and a refused origin the
/// 403 of a refused WebSocket upgrade. One function, so that it can later
/// follow the REST API's CORS policy.
pub(crate) fn cors(
    req: &Request,
    origins: &OriginPolicy,
) -> Result<Vec<(&'static str, String)>, Response> {
    origins.check(req)?;
    Ok(match req.header("origin") {
        Some(origin) if !origin.is_empty() => vec![
            ("Access-Control-Allow-Origin", origin.to_owned()),
            ("Access-Control-Allow-Credentials", "true".to_owned()),
            ("Vary", "Origin".to_owned()),
        ],
        _ => Vec::new(),
    })
}

/// The preflight's extra headers: the methods of the polling routes and
/// the headers the browser asks for.
pub(super) fn preflight(req: &Request, headers: &mut Vec<(&'static str, String)>) {
    headers.push((
        "Access-Control-Allow-Methods",
        "GET, POST, OPTIONS".to_owned(),
    ));
    if let Some(h) = req.header("access-control-request-headers") {
        headers.push(("Access-Control-Allow-Headers", h.to_owned()));
    }
    headers.push(("Access-Control-Max-Age", "86400".to_owned()));
}
