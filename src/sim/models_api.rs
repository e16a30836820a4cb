//! `GET /models` and `GET /model/{author}/{slug}`: the catalog, public (no key needed), in the
//! document's `ModelsListResponse` shape with `total_count` and `links.next`. The list honours
//! `offset`, `limit` and `supported_parameters` (every listed parameter must be supported).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::openrouter::wire::{self, Data};

use super::catalog::CatalogModel;
use super::errors::ApiError;
use super::server::Sim;

#[derive(Serialize)]
struct ModelList {
    data: Vec<wire::Model>,
    total_count: usize,
    links: Links,
}

#[derive(Serialize)]
struct Links {
    next: Option<String>,
}

fn number(query: &HashMap<String, String>, name: &str) -> Result<Option<usize>, ApiError> {
    match query.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(raw) => raw.parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!("{name}: expected a non-negative integer, got {raw:?}"))
        }),
    }
}

fn supports_all(model: &CatalogModel, wanted: &[&str]) -> bool {
    wanted.iter().all(|p| model.supported_parameters.iter().any(|s| s == p))
}

pub(crate) async fn list(
    State(sim): State<Arc<Sim>>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let offset = number(&query, "offset")?;
    let limit = number(&query, "limit")?;
    if limit.is_some_and(|l| !(1..=1000).contains(&l)) {
        return Err(ApiError::bad_request("limit: must be between 1 and 1000"));
    }
    let wanted: Vec<&str> = query
        .get("supported_parameters")
        .map(|s| s.split(',').map(str::trim).filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    let matching: Vec<&CatalogModel> =
        sim.catalog.models().iter().filter(|m| supports_all(m, &wanted)).collect();

    let total_count = matching.len();
    let start = offset.unwrap_or(0);
    let take = match (offset, limit) {
        (None, None) => total_count,
        _ => limit.unwrap_or(500),
    };
    let data: Vec<wire::Model> =
        matching.into_iter().skip(start).take(take).map(CatalogModel::to_wire).collect();
    let end = start + data.len();
    let next = (end < total_count).then(|| format!("/api/v1/models?offset={end}&limit={take}"));
    Ok(Json(ModelList { data, total_count, links: Links { next } }).into_response())
}

pub(crate) async fn one(
    State(sim): State<Arc<Sim>>,
    Path((author, slug)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = format!("{author}/{slug}");
    let model =
        sim.catalog.get(&id).ok_or_else(|| ApiError::not_found(format!("Model {id} not found")))?;
    Ok(Json(Data { data: model.to_wire() }).into_response())
}
