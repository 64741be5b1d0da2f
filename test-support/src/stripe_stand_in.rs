//! A stateful stand-in for the parts of Stripe's API that invoicing uses, over real HTTP.
//!
//! There is no offline Stripe, and `stripe-mock` keeps no state and does not replay
//! idempotency keys, so this server keeps customers, invoices and invoice items in memory and
//! behaves as Stripe documents for exactly these calls: form-encoded bodies with bracketed
//! nesting, a bearer secret key, `Idempotency-Key` replay of the stored response (with
//! `Idempotent-Replayed: true`), and a 400 `idempotency_error` for a key reused with
//! different parameters or on another endpoint. Unknown parameters are refused as Stripe
//! refuses them, so a client that sends something Stripe would not accept fails here too.
//!
//! Every request is recorded. Faults are injected per call, for the next N matching requests:
//! a 500, a 429 with `Retry-After`, a hang (the client's timeout fires first), and "commit,
//! then drop": the call takes effect and the connection closes before any response.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

/// The secret key the stand-in accepts.
pub const STAND_IN_API_KEY: &str = "sk_test_tollgate_stand_in_key";

/// The Stripe calls the stand-in implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StripeCall {
    /// `POST /v1/customers`
    CreateCustomer,
    /// `GET /v1/customers/search`
    SearchCustomers,
    /// `POST /v1/invoices`
    CreateInvoice,
    /// `GET /v1/invoices/search`
    SearchInvoices,
    /// `GET /v1/invoices/{id}`
    RetrieveInvoice,
    /// `POST /v1/invoiceitems`
    CreateInvoiceItem,
    /// `GET /v1/invoiceitems`
    ListInvoiceItems,
    /// `POST /v1/invoices/{id}/finalize`
    FinalizeInvoice,
    /// `POST /v1/invoices/{id}/send`
    SendInvoice,
}

impl StripeCall {
    /// The calls that change state (each carries an idempotency key).
    pub const WRITES: [Self; 5] = [
        Self::CreateCustomer,
        Self::CreateInvoice,
        Self::CreateInvoiceItem,
        Self::FinalizeInvoice,
        Self::SendInvoice,
    ];

    fn of(method: &Method, segments: &[&str]) -> Option<Self> {
        match (method.as_str(), segments) {
            ("POST", ["v1", "customers"]) => Some(Self::CreateCustomer),
            ("GET", ["v1", "customers", "search"]) => Some(Self::SearchCustomers),
            ("POST", ["v1", "invoices"]) => Some(Self::CreateInvoice),
            ("GET", ["v1", "invoices", "search"]) => Some(Self::SearchInvoices),
            ("GET", ["v1", "invoices", _]) => Some(Self::RetrieveInvoice),
            ("POST", ["v1", "invoiceitems"]) => Some(Self::CreateInvoiceItem),
            ("GET", ["v1", "invoiceitems"]) => Some(Self::ListInvoiceItems),
            ("POST", ["v1", "invoices", _, "finalize"]) => Some(Self::FinalizeInvoice),
            ("POST", ["v1", "invoices", _, "send"]) => Some(Self::SendInvoice),
            _ => None,
        }
    }

    /// Parameters Stripe would accept for this call (the subset we implement).
    fn allowed_params(self) -> &'static [&'static str] {
        match self {
            Self::CreateCustomer => &["name", "email", "description", "metadata"],
            Self::CreateInvoice => &[
                "customer",
                "auto_advance",
                "pending_invoice_items_behavior",
                "currency",
                "collection_method",
                "days_until_due",
                "description",
                "metadata",
            ],
            Self::CreateInvoiceItem => &[
                "customer",
                "invoice",
                "amount",
                "currency",
                "description",
                "metadata",
            ],
            Self::FinalizeInvoice => &["auto_advance"],
            Self::SearchCustomers | Self::SearchInvoices => &["query", "limit"],
            Self::ListInvoiceItems => &["invoice", "limit", "customer"],
            Self::RetrieveInvoice | Self::SendInvoice => &[],
        }
    }
}

/// A fault to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer 500 without acting.
    ServerError,
    /// Answer 429 with `Retry-After` (seconds) without acting.
    RateLimited {
        /// The `Retry-After` value.
        retry_after_secs: u64,
    },
    /// Hang this long without acting, then answer 500 (the client should have given up).
    Hang(Duration),
    /// Act (and store the idempotent result), then close the connection without answering.
    CommitThenDrop,
}

/// One request as the stand-in received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The call, if it is one the stand-in implements.
    pub call: Option<StripeCall>,
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Decoded form body and query parameters, in order.
    pub params: Vec<(String, String)>,
    /// The `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
    /// The status answered (0 when the connection was dropped).
    pub status: u16,
    /// Whether the answer was a stored idempotent response.
    pub replayed: bool,
    /// The fault injected, if any.
    pub fault: Option<Fault>,
}

#[derive(Debug)]
struct StoredResponse {
    endpoint: String,
    params: Vec<(String, String)>,
    status: u16,
    body: String,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    customers: Vec<Value>,
    invoices: Vec<Value>,
    items: Vec<Value>,
    sends: HashMap<String, u32>,
    idempotency: HashMap<String, StoredResponse>,
    faults: Vec<(StripeCall, Fault, u32)>,
    requests: Vec<RecordedRequest>,
}

/// The running stand-in; it stops with the test's runtime.
#[derive(Debug, Clone)]
pub struct StripeStandIn {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

enum Outcome {
    Respond(u16, String, bool),
    Drop,
}

impl StripeStandIn {
    /// Starts a stand-in on a free loopback port of the current runtime.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the Stripe stand-in");
        let addr = listener.local_addr().expect("stand-in address");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(state.clone(), request));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, state }
    }

    /// The base URL to configure the client with (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Injects `fault` into the next `times` requests of `call`.
    pub fn inject(&self, call: StripeCall, fault: Fault, times: u32) {
        self.lock().faults.push((call, fault, times));
    }

    /// Removes every pending fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Customers, in creation order.
    pub fn customers(&self) -> Vec<Value> {
        self.lock().customers.clone()
    }

    /// Invoices (with their current status and total), in creation order.
    pub fn invoices(&self) -> Vec<Value> {
        let state = self.lock();
        state
            .invoices
            .iter()
            .map(|invoice| with_totals(&state, invoice))
            .collect()
    }

    /// Invoice items, in creation order.
    pub fn invoice_items(&self) -> Vec<Value> {
        self.lock().items.clone()
    }

    /// How often `invoice_id` was sent (not counting replays).
    pub fn sends(&self, invoice_id: &str) -> u32 {
        self.lock().sends.get(invoice_id).copied().unwrap_or(0)
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let authorization = header("authorization");
    let idempotency_key = header("idempotency-key");
    let content_type = header("content-type").unwrap_or_default();
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Err(std::io::Error::other(e)),
    };
    let mut params = decode_form(&query);
    if method == Method::POST {
        params.extend(decode_form(&String::from_utf8_lossy(&body)));
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let call = StripeCall::of(&method, &segments);
    let fault = call.and_then(|call| take_fault(&state, call));
    let mut record = RecordedRequest {
        call,
        method: method.to_string(),
        path: path.clone(),
        params: params.clone(),
        idempotency_key: idempotency_key.clone(),
        status: 0,
        replayed: false,
        fault,
    };
    let outcome = match fault {
        Some(Fault::ServerError) => Outcome::Respond(500, error("api_error", "injected"), false),
        Some(Fault::RateLimited { retry_after_secs }) => {
            record.status = 429;
            push_record(&state, record);
            return Ok(response(
                429,
                error("rate_limit_error", "injected"),
                false,
                Some(retry_after_secs),
            ));
        }
        Some(Fault::Hang(duration)) => {
            tokio::time::sleep(duration).await;
            Outcome::Respond(500, error("api_error", "injected hang"), false)
        }
        Some(Fault::CommitThenDrop) | None => {
            let acted = act(
                &state,
                call,
                &method,
                &path,
                &segments,
                &params,
                authorization.as_deref(),
                idempotency_key.as_deref(),
                &content_type,
            );
            if fault == Some(Fault::CommitThenDrop) {
                Outcome::Drop
            } else {
                acted
            }
        }
    };
    match outcome {
        Outcome::Respond(status, body, replayed) => {
            record.status = status;
            record.replayed = replayed;
            push_record(&state, record);
            Ok(response(status, body, replayed, None))
        }
        Outcome::Drop => {
            push_record(&state, record);
            // An error from the service makes hyper close the connection without a response.
            Err(std::io::Error::other("injected: commit, then drop"))
        }
    }
}

fn push_record(state: &Mutex<State>, record: RecordedRequest) {
    state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .requests
        .push(record);
}

fn take_fault(state: &Mutex<State>, call: StripeCall) -> Option<Fault> {
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    let index = state
        .faults
        .iter()
        .position(|(c, _, times)| *c == call && *times > 0)?;
    let entry = &mut state.faults[index];
    entry.2 -= 1;
    let fault = entry.1;
    if entry.2 == 0 {
        state.faults.remove(index);
    }
    Some(fault)
}

#[allow(clippy::too_many_arguments)]
fn act(
    state: &Mutex<State>,
    call: Option<StripeCall>,
    method: &Method,
    path: &str,
    segments: &[&str],
    params: &[(String, String)],
    authorization: Option<&str>,
    idempotency_key: Option<&str>,
    content_type: &str,
) -> Outcome {
    if authorization != Some(&format!("Bearer {STAND_IN_API_KEY}")) {
        return Outcome::Respond(
            401,
            error("invalid_request_error", "Invalid API Key provided"),
            false,
        );
    }
    let Some(call) = call else {
        return Outcome::Respond(
            404,
            error(
                "invalid_request_error",
                &format!("Unrecognized request URL ({method}: {path})"),
            ),
            false,
        );
    };
    if *method == Method::POST && !content_type.starts_with("application/x-www-form-urlencoded") {
        return Outcome::Respond(
            400,
            error(
                "invalid_request_error",
                "Stripe expects a form-encoded body",
            ),
            false,
        );
    }
    for (key, _) in params {
        let top = key.split('[').next().unwrap_or(key);
        if !call.allowed_params().contains(&top) {
            return Outcome::Respond(
                400,
                error(
                    "invalid_request_error",
                    &format!("Received unknown parameter: {key}"),
                ),
                false,
            );
        }
    }
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    let endpoint = format!("{method} {path}");
    if *method == Method::POST
        && let Some(key) = idempotency_key
        && let Some(stored) = state.idempotency.get(key)
    {
        if stored.endpoint != endpoint || stored.params != params {
            return Outcome::Respond(
                400,
                error(
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same \
                     parameters they were first used with.",
                ),
                false,
            );
        }
        return Outcome::Respond(stored.status, stored.body.clone(), true);
    }
    let (status, body) = execute(&mut state, call, segments, params);
    if *method == Method::POST
        && let Some(key) = idempotency_key
    {
        state.idempotency.insert(
            key.to_owned(),
            StoredResponse {
                endpoint,
                params: params.to_vec(),
                status,
                body: body.clone(),
            },
        );
    }
    Outcome::Respond(status, body, false)
}

fn execute(
    state: &mut State,
    call: StripeCall,
    segments: &[&str],
    params: &[(String, String)],
) -> (u16, String) {
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let missing = |name: &str| {
        (
            400,
            error(
                "invalid_request_error",
                &format!("Missing required param: {name}."),
            ),
        )
    };
    match call {
        StripeCall::CreateCustomer => {
            let id = new_id(state, "cus");
            let customer = json!({
                "id": id, "object": "customer",
                "name": param("name"), "email": param("email"),
                "metadata": metadata(params),
            });
            state.customers.push(customer.clone());
            (200, customer.to_string())
        }
        StripeCall::SearchCustomers | StripeCall::SearchInvoices => {
            let Some((key, value)) = param("query").as_deref().and_then(parse_metadata_query)
            else {
                return (
                    400,
                    error("invalid_request_error", "unsupported search query"),
                );
            };
            let pool = if call == StripeCall::SearchCustomers {
                &state.customers
            } else {
                &state.invoices
            };
            let data: Vec<Value> = pool
                .iter()
                .filter(|object| object["metadata"][&key].as_str() == Some(value.as_str()))
                .map(|object| with_totals(state, object))
                .collect();
            (
                200,
                json!({ "object": "search_result", "data": data, "has_more": false }).to_string(),
            )
        }
        StripeCall::CreateInvoice => {
            let Some(customer) = param("customer") else {
                return missing("customer");
            };
            if !state.customers.iter().any(|c| c["id"] == customer.as_str()) {
                return (404, no_such("customer", &customer));
            }
            let id = new_id(state, "in");
            let invoice = json!({
                "id": id, "object": "invoice", "customer": customer, "status": "draft",
                "currency": param("currency").unwrap_or_else(|| "usd".into()),
                "collection_method": param("collection_method")
                    .unwrap_or_else(|| "charge_automatically".into()),
                "auto_advance": param("auto_advance").as_deref() != Some("false"),
                "pending_invoice_items_behavior": param("pending_invoice_items_behavior"),
                "days_until_due": param("days_until_due").and_then(|d| d.parse::<u32>().ok()),
                "description": param("description"),
                "metadata": metadata(params),
            });
            state.invoices.push(invoice.clone());
            (200, with_totals(state, &invoice).to_string())
        }
        StripeCall::RetrieveInvoice => {
            let id = segments.get(2).copied().unwrap_or_default();
            match state.invoices.iter().find(|i| i["id"] == id) {
                Some(invoice) => (200, with_totals(state, invoice).to_string()),
                None => (404, no_such("invoice", id)),
            }
        }
        StripeCall::CreateInvoiceItem => {
            let (Some(customer), Some(invoice_id)) = (param("customer"), param("invoice")) else {
                return missing("customer, invoice");
            };
            let Some(amount) = param("amount").and_then(|a| a.parse::<i64>().ok()) else {
                return missing("amount");
            };
            let Some(invoice) = state
                .invoices
                .iter()
                .find(|i| i["id"] == invoice_id.as_str())
            else {
                return (404, no_such("invoice", &invoice_id));
            };
            if invoice["status"] != "draft" {
                return (
                    400,
                    error(
                        "invalid_request_error",
                        "You can only add invoice items to draft invoices.",
                    ),
                );
            }
            if invoice["customer"] != customer.as_str() {
                return (
                    400,
                    error(
                        "invalid_request_error",
                        "The invoice belongs to another customer.",
                    ),
                );
            }
            let id = new_id(state, "ii");
            let item = json!({
                "id": id, "object": "invoiceitem", "customer": customer, "invoice": invoice_id,
                "amount": amount, "currency": param("currency"),
                "description": param("description"), "metadata": metadata(params),
            });
            state.items.push(item.clone());
            (200, item.to_string())
        }
        StripeCall::ListInvoiceItems => {
            let invoice = param("invoice");
            let data: Vec<Value> = state
                .items
                .iter()
                .filter(|item| invoice.as_deref().is_none_or(|id| item["invoice"] == id))
                .cloned()
                .collect();
            (
                200,
                json!({ "object": "list", "data": data, "has_more": false }).to_string(),
            )
        }
        StripeCall::FinalizeInvoice | StripeCall::SendInvoice => {
            let id = segments.get(2).copied().unwrap_or_default().to_owned();
            let Some(index) = state.invoices.iter().position(|i| i["id"] == id.as_str()) else {
                return (404, no_such("invoice", &id));
            };
            let status = state.invoices[index]["status"].as_str().unwrap_or_default();
            if call == StripeCall::FinalizeInvoice {
                if status != "draft" {
                    return (
                        400,
                        error(
                            "invalid_request_error",
                            "This invoice is already finalized, you can't re-finalize a \
                             non-draft invoice.",
                        ),
                    );
                }
                state.invoices[index]["status"] = json!("open");
            } else {
                if status != "open" || state.invoices[index]["collection_method"] != "send_invoice"
                {
                    return (
                        400,
                        error(
                            "invalid_request_error",
                            "You can only send open invoices with collection_method \
                             send_invoice.",
                        ),
                    );
                }
                *state.sends.entry(id.clone()).or_default() += 1;
            }
            let invoice = state.invoices[index].clone();
            (200, with_totals(state, &invoice).to_string())
        }
    }
}

fn with_totals(state: &State, invoice: &Value) -> Value {
    let id = invoice["id"].as_str().unwrap_or_default();
    let total: i64 = state
        .items
        .iter()
        .filter(|item| item["invoice"] == id)
        .filter_map(|item| item["amount"].as_i64())
        .sum();
    let mut invoice = invoice.clone();
    invoice["total"] = json!(total);
    invoice["amount_due"] = json!(total);
    invoice
}

fn new_id(state: &mut State, prefix: &str) -> String {
    state.next_id += 1;
    format!("{prefix}_standin{:08}", state.next_id)
}

fn metadata(params: &[(String, String)]) -> Value {
    let mut map = Map::new();
    for (key, value) in params {
        if let Some(inner) = key
            .strip_prefix("metadata[")
            .and_then(|k| k.strip_suffix(']'))
        {
            map.insert(inner.to_owned(), json!(value));
        }
    }
    Value::Object(map)
}

/// `metadata['key']:'value'`, the one search form invoicing uses.
fn parse_metadata_query(query: &str) -> Option<(String, String)> {
    let rest = query.strip_prefix("metadata['")?;
    let (key, rest) = rest.split_once("']:'")?;
    let value = rest.strip_suffix('\'')?;
    Some((key.to_owned(), value.to_owned()))
}

fn error(kind: &str, message: &str) -> String {
    json!({ "error": { "type": kind, "message": message } }).to_string()
}

fn no_such(object: &str, id: &str) -> String {
    json!({ "error": { "type": "invalid_request_error", "code": "resource_missing",
                       "message": format!("No such {object}: '{id}'") } })
    .to_string()
}

fn response(
    status: u16,
    body: String,
    replayed: bool,
    retry_after: Option<u64>,
) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json");
    if replayed {
        builder = builder.header("idempotent-replayed", "true");
    }
    if let Some(seconds) = retry_after {
        builder = builder.header("retry-after", seconds.to_string());
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// Decodes `application/x-www-form-urlencoded` (also a query string) into ordered pairs.
pub fn decode_form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (b'+', None) => out.push(b' '),
            (byte, None) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `Stripe-Signature` header Stripe would send for `payload` at `timestamp`:
/// `t=<timestamp>,v1=<hex HMAC-SHA-256 of "<timestamp>.<payload>">`.
pub fn sign_webhook(secret: &str, timestamp: i64, payload: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("{timestamp}.{payload}").as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_with_brackets_and_percent_escapes() {
        assert_eq!(
            decode_form("metadata%5Bk%5D=a%20b&x=1+2&bad=%zz&end=%4"),
            vec![
                ("metadata[k]".to_owned(), "a b".to_owned()),
                ("x".to_owned(), "1 2".to_owned()),
                ("bad".to_owned(), "%zz".to_owned()),
                ("end".to_owned(), "%4".to_owned()),
            ]
        );
        assert_eq!(
            parse_metadata_query("metadata['tollgate_invoice_id']:'abc'"),
            Some(("tollgate_invoice_id".to_owned(), "abc".to_owned()))
        );
    }

    #[test]
    fn webhook_signatures_are_hex_hmacs() {
        let header = sign_webhook("whsec_test", 1_700_000_000, "{}");
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(header.len(), "t=1700000000,v1=".len() + 64);
    }
}
