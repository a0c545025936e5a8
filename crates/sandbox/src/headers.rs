//! The host memory guests build in `wasi:http` header fields, charged to
//! the invocation's [`crate::budget::HostBudget`].
//!
//! wasmtime-wasi-http 48 bounds each `fields` resource on its own (its
//! field size limit, 128 KiB by default) and the resource table bounds how
//! many exist, but nothing bounds their sum: a guest that loops
//! `fields.new` + `append` makes the host hold gigabytes. The crate has no
//! knob for a total, so we wrap at the host-call boundary: the functions
//! that put bytes into a `fields` resource (`from-list`, `set`, `append`,
//! `clone`) are redefined in the linker (shadowing the crate's
//! definitions) to charge the budget first and then call the crate's own
//! implementation. The interface has no error case for "too large" (the
//! crate itself traps when a field set exceeds its limit), so a refused
//! charge traps the instance, and the invocation fails as over its memory
//! limit.
//!
//! Charges are cumulative: a `fields` resource a guest drops may live on
//! in a request or response built from it, so dropping one gives nothing
//! back.
//!
//! # Trust
//! Trusts wasmtime-wasi-http to store what it is given; measures every
//! byte the guest passes before it is stored.

use std::mem::size_of;

use http::HeaderValue;
use wasmtime::component::{Linker, Resource};
use wasmtime::StoreContextMut;
use wasmtime_wasi_http::p2::bindings::http::types::{self, HostFields as _};
use wasmtime_wasi_http::p2::HeaderResult;
use wasmtime_wasi_http::{FieldMap, WasiHttpView as _};

use crate::invoke::InvocationState;

/// The interface whose functions are redefined: the version
/// `wasmtime_wasi_http::p2::add_only_http_to_linker_async` links (guests
/// importing older 0.2 versions resolve to it).
const TYPES: &str = "wasi:http/types@0.2.12";
const CAPABILITY: &str = "wasi:http/types";

/// Host bytes of one header value beyond its own bytes (the `HeaderValue`
/// and the map's entry), as wasmtime-wasi-http counts them.
const VALUE_OVERHEAD: usize = size_of::<HeaderValue>() + 16;

/// Redefine the byte-adding `fields` functions in `linker` (after
/// wasmtime-wasi-http has linked its own).
pub(crate) fn add_to_linker(linker: &mut Linker<InvocationState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(TYPES)?;
    types.func_wrap(
        "[static]fields.from-list",
        |mut store: StoreContextMut<'_, InvocationState>, (entries,): (Vec<(String, Vec<u8>)>,)| {
            let bytes = entries.iter().fold(0usize, |sum, (name, value)| {
                sum.saturating_add(entry_bytes(name, value.len()))
            });
            charge(&mut store, "header fields (`fields.from-list`)", bytes)?;
            Ok((lower(store.data_mut().http().from_list(entries))?,))
        },
    )?;
    types.func_wrap(
        "[method]fields.set",
        |mut store: StoreContextMut<'_, InvocationState>,
         (fields, name, values): (Resource<FieldMap>, String, Vec<Vec<u8>>)| {
            let bytes = values.iter().fold(name.len(), |sum, value| {
                sum.saturating_add(value.len().saturating_add(VALUE_OVERHEAD))
            });
            charge(&mut store, "header fields (`fields.set`)", bytes)?;
            Ok((lower(store.data_mut().http().set(fields, name, values))?,))
        },
    )?;
    types.func_wrap(
        "[method]fields.append",
        |mut store: StoreContextMut<'_, InvocationState>,
         (fields, name, value): (Resource<FieldMap>, String, Vec<u8>)| {
            let bytes = entry_bytes(&name, value.len());
            charge(&mut store, "header fields (`fields.append`)", bytes)?;
            Ok((lower(store.data_mut().http().append(fields, name, value))?,))
        },
    )?;
    types.func_wrap(
        "[method]fields.clone",
        |mut store: StoreContextMut<'_, InvocationState>, (fields,): (Resource<FieldMap>,)| {
            // The copy shares the original until it is changed, then holds
            // all of it: charge all of it.
            let bytes = {
                let http = store.data_mut().http();
                let map = http.table.get(&fields)?;
                map.iter().fold(0usize, |sum, (name, value)| {
                    sum.saturating_add(entry_bytes(name.as_str(), value.len()))
                })
            };
            charge(&mut store, "header fields (`fields.clone`)", bytes)?;
            Ok((store.data_mut().http().clone(fields)?,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

fn entry_bytes(name: &str, value_len: usize) -> usize {
    name.len()
        .saturating_add(value_len)
        .saturating_add(VALUE_OVERHEAD)
}

fn charge(
    store: &mut StoreContextMut<'_, InvocationState>,
    what: &'static str,
    bytes: usize,
) -> wasmtime::Result<()> {
    store
        .data()
        .budget()
        .charge(CAPABILITY, what, bytes)
        .map_err(wasmtime::Error::from)
}

/// The crate's trappable header result as the guest's `result`.
fn lower<T>(result: HeaderResult<T>) -> wasmtime::Result<Result<T, types::HeaderError>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(error) => Ok(Err(error.downcast()?)),
    }
}
