// The demo page: pay through /demo/payments, then follow the payment with its
// client secret (read-only) over Server-Sent Events. No API key in the browser.
"use strict";

const MINOR_UNITS = { usd: 2, eur: 2, gbp: 2, jpy: 0, kwd: 3 };
const $ = (id) => document.getElementById(id);
let current = null;   // the payment object as last read
let stream = null;    // its EventSource
let eventTypes = [];  // every event type, from /demo/config

const HEADLINES = {
  processing: () => "Payment request received. Processing…",
  requires_action: () => "Confirm with your bank",
  requires_capture: () => "Authorized: capture or cancel it",
  succeeded: () => "Payment succeeded",
  partially_refunded: () => "Payment succeeded, partially refunded",
  refunded: () => "Payment refunded",
  canceled: () => "Payment canceled",
  failed: (p) => "Payment failed" + (p.failure ? `: ${(p.failure.decline_code || p.failure.code).replaceAll("_", " ")}` : ""),
};

function toMinor(value, currency) {
  return Math.round(Number(value) * 10 ** MINOR_UNITS[currency]);
}

function money(amount, currency) {
  const places = MINOR_UNITS[currency] ?? 2;
  return `${(amount / 10 ** places).toFixed(places)} ${currency.toUpperCase()}`;
}

function secretQuery(payment) {
  return `client_secret=${encodeURIComponent(payment.client_secret)}`;
}

// The client secret only reads; acting on the payment takes the token the
// page was given when it made it.
function tokenQuery(payment) {
  return `demo_token=${encodeURIComponent(payment.demo_token)}`;
}

async function call(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await response.json();
  if (!response.ok) throw new Error(json.error ? json.error.message : response.statusText);
  return json;
}

function show(payment) {
  // A read (GET) carries no demo token: keep the one the page was given.
  const token = payment.demo_token ?? (current && current.id === payment.id ? current.demo_token : undefined);
  current = { ...payment, demo_token: token };
  $("payment").hidden = false;
  $("payment-id").textContent = payment.id;
  $("status").dataset.status = payment.status;
  $("status").textContent = HEADLINES[payment.status](payment);
  const c = payment.currency;
  $("amounts").textContent = `${money(payment.amount, c)} · captured ${money(payment.amount_captured, c)}` +
    ` · refunded ${money(payment.amount_refunded, c)}`;
  showAction(payment);
  $("capture").disabled = payment.status !== "requires_capture";
  $("cancel").disabled = !["processing", "requires_action", "requires_capture"].includes(payment.status);
  const refundable = ["succeeded", "partially_refunded"].includes(payment.status);
  $("refund").disabled = !refundable;
  $("refund-amount").disabled = !refundable;
  $("events-link").href = `${payment.links.events}?${secretQuery(payment)}`;
  $("temporal-link").href = payment.links.temporal_ui;
}

// 3-D Secure: the bank's page, in the page, while the payment waits on the
// customer; the outcome then comes over the stream like any other event.
function showAction(payment) {
  const redirect = payment.next_action && payment.next_action.redirect_to_url;
  const waiting = payment.status === "requires_action" && redirect && redirect.url;
  $("action").hidden = !waiting;
  if (!waiting) {
    $("challenge").removeAttribute("src");
    return;
  }
  if ($("challenge").getAttribute("src") !== redirect.url) $("challenge").src = redirect.url;
  $("challenge-link").href = redirect.url;
}

function describe(event) {
  const d = event.data;
  const c = current ? current.currency : "usd";
  switch (event.type) {
    case "payment.requested": return `${money(d.amount, d.currency)} with ${d.payment_method}`;
    case "payment.authorized": return `${money(d.amount, c)} authorized (${d.authorization_id})`;
    case "payment.captured": return `${money(d.amount, c)} captured`;
    case "payment.declined": return `${d.code}${d.decline_code ? " / " + d.decline_code : ""}: ${d.message}`;
    case "payment.failed": return d.failure ? d.failure.message : "";
    case "payment.action_required": return "the customer must confirm with their bank (3-D Secure)";
    case "payment.authenticated": return "the customer confirmed with their bank";
    case "refund.requested": case "refund.succeeded": return `${money(d.amount, c)}`;
    case "refund.failed": return d.message || "";
    case "receipt.sent": return `${d.receipt} receipt e-mailed (${d.message_id})`;
    case "receipt.failed": return `${d.receipt} receipt not e-mailed: ${d.message}`;
    default: return d.reason || d.message || "";
  }
}

function addToTimeline(event) {
  const item = document.createElement("li");
  item.dataset.type = event.type;
  const type = document.createElement("span");
  type.className = "type";
  type.textContent = event.type;
  const when = document.createElement("span");
  when.className = "when";
  when.textContent = new Date(event.at).toLocaleTimeString();
  const detail = document.createElement("div");
  detail.className = "detail";
  detail.textContent = describe(event);
  item.append(type, when, detail);
  $("timeline").append(item);
}

// The deliveries of the payment's events to the demo merchant's webhook
// endpoint, read again after each event (a delivery follows its event).
let deliveriesTimer = null;

function showDeliveries(deliveries) {
  $("deliveries").replaceChildren(...deliveries.map((d) => {
    const item = document.createElement("li");
    item.dataset.type = d.type;
    item.dataset.status = d.status;
    const code = d.last_status_code ? ` · HTTP ${d.last_status_code}` : (d.last_error ? ` · ${d.last_error}` : "");
    item.textContent = `${d.type} (seq ${d.seq}): ${d.status}, ${d.attempts} attempt${d.attempts === 1 ? "" : "s"}${code}`;
    return item;
  }));
}

async function loadDeliveries(payment, tries = 10) {
  clearTimeout(deliveriesTimer);
  const response = await fetch(`/demo/payments/${payment.id}/deliveries?${tokenQuery(payment)}`);
  if (!response.ok) return;
  const deliveries = (await response.json()).data;
  showDeliveries(deliveries);
  const done = deliveries.length > 0 && deliveries.every((d) => d.status !== "pending");
  if (!done && tries > 0) deliveriesTimer = setTimeout(() => loadDeliveries(payment, tries - 1), 500);
}

async function refresh() {
  const response = await fetch(`/v1/payments/${current.id}?${secretQuery(current)}`);
  if (response.ok) show(await response.json());
}

function follow(payment) {
  if (stream) stream.close();
  $("timeline").replaceChildren();
  $("deliveries").replaceChildren();
  // follow=true: later captures and refunds appear too, until the workflow closes.
  stream = new EventSource(`${payment.links.stream}?${secretQuery(payment)}&follow=true`);
  const onEvent = (message) => {
    addToTimeline(JSON.parse(message.data));
    refresh();
    loadDeliveries(current);
  };
  for (const type of eventTypes) stream.addEventListener(type, onEvent);
  stream.onerror = () => { if (stream.readyState === EventSource.CLOSED) stream = null; };
}

// The test payment methods come from the server: each gateway supports its own.
async function loadConfig() {
  try {
    const response = await fetch("/demo/config");
    if (!response.ok) throw new Error(response.statusText);
    const config = await response.json();
    const select = $("payment-method");
    select.replaceChildren(...config.payment_methods.map((method) => {
      const option = document.createElement("option");
      option.value = method.id;
      option.textContent = method.label;
      return option;
    }));
    $("gateway").textContent = `Gateway: ${config.gateway}`;
    eventTypes = config.event_types;
    $("pay").disabled = false;
  } catch (error) {
    $("form-error").textContent = `Could not load the test payment methods: ${error.message}`;
    $("form-error").hidden = false;
  }
}

loadConfig();

$("pay-form").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  $("form-error").hidden = true;
  const currency = $("currency").value;
  try {
    const payment = await call("/demo/payments", {
      amount: toMinor($("amount").value, currency),
      currency,
      payment_method: $("payment-method").value,
      capture_method: $("manual").checked ? "manual" : "automatic",
      ...($("receipt-email").value ? { receipt_email: $("receipt-email").value } : {}),
    });
    show(payment);
    follow(payment);
  } catch (error) {
    $("form-error").textContent = error.message;
    $("form-error").hidden = false;
  }
});

async function act(path, body) {
  try {
    await call(`/demo/payments/${current.id}/${path}?${tokenQuery(current)}`, body);
  } catch (error) {
    alert(error.message);
  }
}

$("capture").addEventListener("click", () => act("capture"));
$("cancel").addEventListener("click", () => act("cancel"));
$("refund").addEventListener("click", () => {
  const value = $("refund-amount").value;
  act("refunds", value ? { amount: toMinor(value, current.currency) } : {});
});
