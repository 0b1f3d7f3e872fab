//! The request's parts as the handlers take them, each refused with one of the API's errors (a
//! JSON body with a code and the request id) instead of axum's plain-text rejections: the body
//! ([`ApiJson`]), the path's segments ([`ApiPath`]) and the query string ([`ApiQuery`]).

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use byok_core::ApiCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body whose rejections are API errors (not axum's plain-text ones).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        use axum::extract::rejection::JsonRejection;
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::new(
                    ApiCode::TooLarge,
                    "request body too large; use the streaming format for large data",
                ))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                ApiCode::UnsupportedMediaType,
                "send the body as JSON with `Content-Type: application/json`",
            )),
            Err(e) => Err(ApiError::new(
                ApiCode::MalformedJson,
                format!(
                    "the body is not the JSON this call takes: {}",
                    e.body_text()
                ),
            )),
        }
    }
}

/// The path's segments (a segment that is not UTF-8, say, is `invalid_request`).
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(e) => Err(ApiError::invalid(format!(
                "the path is not one this call takes: {}",
                e.body_text()
            ))),
        }
    }
}

/// The query string (a parameter of the wrong type, say, is `invalid_request`).
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(e) => Err(ApiError::invalid(format!(
                "the query string is not one this call takes: {}",
                e.body_text()
            ))),
        }
    }
}
