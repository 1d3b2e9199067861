//! The operators' dashboard and the API reference page: static files
//! compiled into the binary (no CDN, works offline). The pages hold no
//! data: their scripts read the v1 API with the token the operator gives,
//! so they are public like the spec they render.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The pages run only their own scripts and talk only to this server.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// Paths the dashboard serves; authentication lets them through.
pub fn is_page(path: &str) -> bool {
    path == "/" || path == "/api" || path.starts_with("/ui/")
}

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| page(include_str!("index.html"))))
        .route("/api", get(|| page(include_str!("reference.html"))))
        .route(
            "/ui/app.js",
            get(|| asset("text/javascript", include_str!("app.js"))),
        )
        .route(
            "/ui/reference.js",
            get(|| asset("text/javascript", include_str!("reference.js"))),
        )
        .route(
            "/ui/app.css",
            get(|| asset("text/css", include_str!("app.css"))),
        )
}

async fn page(html: &'static str) -> Response {
    let mut response = asset("text/html; charset=utf-8", html).await;
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    response
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The files change with the binary: revalidate, never go stale.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}
