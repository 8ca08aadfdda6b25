#!/usr/bin/env node
// Writes shopmesh.postman_collection.json (Postman collection v2.1) beside
// this file from the gateway's OpenAPI document:
//
//   node deploy/postman/generate.mjs deploy/postman/openapi.json [out.json]
//
// The collection has a folder "Walkthrough" (a customer's and an admin's
// way through the shop, every request checking the exact status it must
// answer), then one folder per tag of the document with one request per
// operation, each checking that the status is one the document lists.
// The same document always gives the same bytes.

import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SCHEMA = 'https://schema.getpostman.com/json/collection/v2.1.0/collection.json';
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];
const WALKTHROUGH = 'Walkthrough';

// Variables a user sets for their deployment, with the values `cargo run`
// is started with in deploy/README.md; the rest are filled in as the
// Walkthrough runs.
const SETTINGS = [
  ['baseUrl', 'http://127.0.0.1:8080', 'The gateway'],
  ['adminEmail', 'admin@shopmesh.local', 'ADMIN_EMAIL the mesh was started with'],
  ['adminPassword', 'admin-password', 'ADMIN_PASSWORD the mesh was started with'],
  ['webhookSecret', 'dev-secret', 'SHIPPING_WEBHOOK_SECRET the mesh was started with'],
  ['password', 'correct horse battery', "The Walkthrough customer's password"],
];
const STATE = [
  ['token', "The customer's access token (Walkthrough: Log in)"],
  ['adminToken', "The admin's access token (Walkthrough: Admin logs in)"],
  ['customerEmail', ''],
  ['customerId', ''],
  ['cartToken', "A guest cart's token (X-Cart-Token)"],
  ['orderKey', ''],
  ['orderTotal', ''],
  ['newProductId', ''],
  ['trackingNumber', ''],
  ['mediaEtag', ''],
  ['modelVersion', ''],
];

// ---------------------------------------------------------------- helpers

const lines = (text) => text.replace(/\n$/, '').split('\n');

const event = (listen, source) => ({
  listen,
  script: { type: 'text/javascript', exec: lines(source) },
});

// A card's expiry year in an example depends on the day the document was
// made; the collection computes it when it runs (see `cardExpYear`).
function jsonText(value) {
  return JSON.stringify(value, null, 2).replace(/"exp_year": \d+/g, '"exp_year": {{cardExpYear}}');
}

function url(raw, query = []) {
  const [base, ...rest] = raw.split('/');
  const u = { raw, host: [base], path: rest };
  if (query.length) {
    u.raw += '?' + query.filter((q) => !q.disabled).map((q) => `${q.key}=${q.value}`).join('&');
    if (u.raw.endsWith('?')) u.raw = raw;
    u.query = query;
  }
  return u;
}

const bearer = (variable) => ({
  type: 'bearer',
  bearer: [{ key: 'token', value: `{{${variable}}}`, type: 'string' }],
});
const NOAUTH = { type: 'noauth' };

const camel = (name) =>
  name
    .replace(/^x-/i, '')
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((w, i) => (i === 0 ? w[0].toLowerCase() + w.slice(1) : w[0].toUpperCase() + w.slice(1)))
    .join('');

// The collection variable a path parameter reads: `{id}` after `products`
// is productId, `{image_id}` imageId, `{key}` after `media` mediaKey.
function pathVariable(segments, index, name) {
  const previous = segments[index - 1] ?? '';
  if (!/[_-]/.test(name) && previous && !previous.startsWith('{')) {
    const owner = previous.endsWith('s') ? previous.slice(0, -1) : previous;
    return camel(`${owner}_${name}`);
  }
  return camel(name);
}

function resolve(doc, value) {
  let seen = 0;
  while (value && typeof value.$ref === 'string' && seen++ < 20) {
    const pointer = value.$ref.replace(/^#\//, '').split('/');
    value = pointer.reduce((node, key) => node?.[key.replace(/~1/g, '/').replace(/~0/g, '~')], doc);
  }
  return value;
}

function schemaExample(doc, schema) {
  schema = resolve(doc, schema);
  if (!schema) return undefined;
  if (Array.isArray(schema.examples) && schema.examples.length) return schema.examples[0];
  if (schema.example !== undefined) return schema.example;
  for (const part of schema.allOf ?? []) {
    const example = schemaExample(doc, part);
    if (example !== undefined) return example;
  }
  return undefined;
}

function mediaExample(doc, media) {
  if (media.example !== undefined) return media.example;
  const named = Object.keys(media.examples ?? {}).sort();
  if (named.length) return resolve(doc, media.examples[named[0]])?.value;
  return schemaExample(doc, media.schema);
}

// A value to start a variable or parameter with, from what the document
// says of it.
function startValue(doc, parameter) {
  if (parameter.example !== undefined) return String(parameter.example);
  const schema = resolve(doc, parameter.schema) ?? {};
  const example = schemaExample(doc, schema);
  if (example !== undefined) return String(example);
  if (schema.default !== undefined && schema.default !== null) return String(schema.default);
  if (Array.isArray(schema.enum) && schema.enum.length) return String(schema.enum[0]);
  const types = [].concat(schema.type ?? []);
  if (types.includes('integer') || types.includes('number')) return String(schema.minimum ?? 1);
  if (schema.format === 'uuid') return '00000000-0000-0000-0000-000000000000';
  return '';
}

const statusList = (codes) => codes.join(', ');

function documentedStatuses(operation) {
  return Object.keys(operation.responses ?? {})
    .filter((s) => /^[1-5]([0-9]{2}|XX)$/.test(s))
    .sort();
}

// --------------------------------------------------- requests by operation

function body(doc, operation) {
  const requestBody = resolve(doc, operation.requestBody);
  const content = requestBody?.content ?? {};
  const json = Object.keys(content).find((t) => /^application\/([a-z0-9.+-]*\+)?json$/.test(t));
  if (json) {
    const example = mediaExample(doc, content[json]);
    return {
      header: { key: 'Content-Type', value: 'application/json' },
      body: {
        mode: 'raw',
        raw: example === undefined ? '{}' : jsonText(example),
        options: { raw: { language: 'json' } },
      },
    };
  }
  const form = content['application/x-www-form-urlencoded'];
  if (form) {
    const example = mediaExample(doc, form) ?? {};
    return {
      header: { key: 'Content-Type', value: 'application/x-www-form-urlencoded' },
      body: {
        mode: 'urlencoded',
        urlencoded: Object.keys(example).map((key) => ({ key, value: String(example[key]), type: 'text' })),
      },
    };
  }
  const multipart = content['multipart/form-data'];
  if (multipart) {
    const schema = resolve(doc, multipart.schema) ?? {};
    const example = mediaExample(doc, multipart) ?? {};
    const formdata = Object.keys(schema.properties ?? {}).map((key) => {
      const property = resolve(doc, schema.properties[key]) ?? {};
      if (property.format === 'binary' || property.contentMediaType) {
        // Sent once a file is chosen.
        return { key, type: 'file', src: [], disabled: true, description: 'Choose a file to send' };
      }
      return { key, value: example[key] === undefined ? '' : String(example[key]), type: 'text' };
    });
    return { body: { mode: 'formdata', formdata } };
  }
  return {};
}

function statusTest(method, path, statuses) {
  const exact = statuses.filter((s) => !s.endsWith('XX')).map(Number);
  const ranges = statuses.filter((s) => s.endsWith('XX')).map((s) => Number(s[0]));
  const check = ranges.length
    ? [
      `    const code = pm.response.code;`,
      `    const listed = [${exact.join(', ')}].includes(code) || [${ranges.join(', ')}].includes(Math.floor(code / 100));`,
      `    pm.expect(listed, 'status ' + code).to.be.true;`,
    ]
    : [`    pm.expect(pm.response.code).to.be.oneOf([${exact.join(', ')}]);`];
  return event(
    'test',
    [
      `pm.test('status is one the document lists for ${method} ${path}: ${statusList(statuses)}', function () {`,
      ...check,
      `});`,
    ].join('\n'),
  );
}

// Whether a collection run can send it unattended: an event stream stays
// open until the client leaves.
function runsUnattended(operation) {
  return !Object.values(operation.responses ?? {}).some((response) =>
    Object.keys(response?.content ?? {}).includes('text/event-stream'),
  );
}

function operationRequest(doc, path, method, operation, variables) {
  const segments = path.split('/').slice(1);
  const parameters = [...(doc.paths[path].parameters ?? []), ...(operation.parameters ?? [])].map((p) =>
    resolve(doc, p),
  );
  const pathParams = new Map(parameters.filter((p) => p.in === 'path').map((p) => [p.name, p]));
  const rawPath = segments
    .map((segment, i) => {
      const name = segment.match(/^\{(.+)\}$/)?.[1];
      if (!name) return segment;
      const variable = pathVariable(segments, i, name);
      if (!variables.has(variable)) {
        variables.set(variable, startValue(doc, pathParams.get(name) ?? {}));
      }
      return `{{${variable}}}`;
    })
    .join('/');
  const query = parameters
    .filter((p) => p.in === 'query')
    .map((p) => {
      const q = { key: p.name, value: startValue(doc, p) };
      if (p.description) q.description = p.description;
      if (!p.required) q.disabled = true;
      return q;
    });
  const header = [];
  for (const p of parameters.filter((p) => p.in === 'header')) {
    let value;
    if (p.name.toLowerCase() === 'idempotency-key') {
      value = '{{$guid}}';
    } else {
      const variable = camel(p.name);
      if (!variables.has(variable)) variables.set(variable, startValue(doc, p));
      value = `{{${variable}}}`;
    }
    const h = { key: p.name, value };
    if (p.description) h.description = p.description;
    if (!p.required && p.name.toLowerCase() !== 'idempotency-key') h.disabled = true;
    header.push(h);
  }
  const made = body(doc, operation);
  if (made.header) header.push(made.header);

  const requirements = operation.security ?? doc.security ?? [];
  const secured = requirements.some((r) => Object.keys(r).length > 0);
  const optional = requirements.some((r) => Object.keys(r).length === 0);
  const runs = runsUnattended(operation);
  const statuses = documentedStatuses(operation);
  const METHOD = method.toUpperCase();

  const summary = operation.summary?.replace(/\s+/g, ' ').trim() ?? '';
  // The name is the summary's first sentence; the description has it all.
  const name = summary.split(/(?<=\.) /)[0].replace(/\.$/, '') || operation.operationId || `${METHOD} ${path}`;
  const notes = [`${METHOD} ${path}`];
  if (summary) notes.push(summary);
  if (operation.description) notes.push(operation.description.trim());
  if (secured && optional) notes.push('Authentication is optional here.');
  if (!runs) notes.push('Not sent by the newman run: the event stream stays open until the client leaves.');
  const request = {
    auth: secured ? bearer('token') : NOAUTH,
    method: METHOD,
    header,
  };
  if (made.body) request.body = made.body;
  request.url = url(`{{baseUrl}}/${rawPath}`, query);
  request.description = notes.join('\n\n');
  const item = { name };
  if (runs && statuses.length) item.event = [statusTest(METHOD, path, statuses)];
  item.request = request;
  item.response = [];
  return item;
}

function tagFolders(doc, variables) {
  const operations = [];
  for (const path of Object.keys(doc.paths ?? {}).sort()) {
    for (const method of METHODS) {
      const operation = doc.paths[path][method];
      if (operation) operations.push({ path, method, operation });
    }
  }
  const declared = (doc.tags ?? []).map((t) => t.name);
  const used = [...new Set(operations.map((o) => o.operation.tags?.[0] ?? 'untagged'))];
  const order = [...declared.filter((t) => used.includes(t)), ...used.filter((t) => !declared.includes(t)).sort()];
  if (order.includes(WALKTHROUGH)) throw new Error(`a tag is named ${WALKTHROUGH}`);
  return order.map((tag) => {
    const folder = { name: tag };
    const description = (doc.tags ?? []).find((t) => t.name === tag)?.description;
    if (description) folder.description = description;
    folder.item = operations
      .filter((o) => (o.operation.tags?.[0] ?? 'untagged') === tag)
      .map((o) => operationRequest(doc, o.path, o.method, o.operation, variables));
    return folder;
  });
}

// ------------------------------------------------------------ walkthrough

const ADDRESS = { name: 'Ada King', line1: '1 Main St', city: 'Springfield', postal_code: '12345', country: 'US' };
const CARD = { number: '4242424242424242', exp_month: 12, exp_year: 0, cvc: '123' };
const PRODUCT = {
  sku: 'PH-{{$guid}}',
  name: 'Desk Plant',
  description: 'A small pothos in a ceramic pot.',
  category: 'home',
  price: { amount: 1900, currency: 'USD' },
  stock: 10,
};
const ORDER = {
  items: [{ product_id: '{{productId}}', quantity: 2 }],
  shipping_address: ADDRESS,
  notes: 'Leave it at the door',
};

// Each step: the operation it sends (checked against the document), the
// exact status it must answer, checks on its JSON body, variables it
// keeps, and for states reached asynchronously how long to send it again
// until `until` holds.
const STEPS = [
  { name: 'Liveness', method: 'GET', path: '/health', expect: 200 },
  {
    name: 'Readiness (the gateway has its listener and a key set)',
    method: 'GET', path: '/ready', expect: 200, poll: 10,
  },
  {
    name: 'Register a customer',
    method: 'POST', path: '/api/v1/auth/register', expect: 201,
    json: { email: 'ada-{{$guid}}@example.com', password: '{{password}}', name: 'Ada Lovelace' },
    checks: ["pm.expect(json.role).to.eql('customer');"],
    keep: { customerEmail: 'json.email', customerId: 'json.id' },
  },
  {
    name: 'Expected failure: the same email again is a conflict',
    method: 'POST', path: '/api/v1/auth/register', expect: 409,
    json: { email: '{{customerEmail}}', password: '{{password}}', name: 'Ada Again' },
  },
  {
    name: 'Expected failure: invalid email and a password shorter than 8',
    method: 'POST', path: '/api/v1/auth/register', expect: 422,
    json: { email: 'not-an-email', password: 'short', name: 'Nobody' },
  },
  {
    name: 'Log in',
    method: 'POST', path: '/api/v1/auth/login', expect: 200,
    json: { email: '{{customerEmail}}', password: '{{password}}' },
    checks: ["pm.expect(json.token_type).to.eql('Bearer');"],
    keep: { token: 'json.access_token' },
  },
  {
    name: 'Expected failure: a wrong password',
    method: 'POST', path: '/api/v1/auth/login', expect: 401,
    json: { email: '{{customerEmail}}', password: 'not the password' },
  },
  { name: 'Expected failure: no access token', method: 'GET', path: '/api/v1/users/me', expect: 401 },
  {
    name: 'Who am I',
    method: 'GET', path: '/api/v1/users/me', auth: 'token', expect: 200,
    checks: ["pm.expect(json.id).to.eql(pm.collectionVariables.get('customerId'));"],
  },
  {
    name: 'Update the profile',
    method: 'PUT', path: '/api/v1/users/me', auth: 'token', expect: 200,
    json: { name: 'Ada King', phone: '+14155550123', address: ADDRESS },
    checks: ["pm.expect(json.phone).to.eql('+14155550123');"],
  },
  {
    name: 'Expected failure: a control character in a text field',
    method: 'PUT', path: '/api/v1/users/me', auth: 'token', expect: 422,
    json: { name: 'Ada\u0000King' },
  },
  {
    name: 'Preferred categories (used by recommendations)',
    method: 'PUT', path: '/api/v1/users/me/preferences', auth: 'token', expect: 200,
    json: { categories: ['home', 'books'] },
  },
  { name: 'List products', method: 'GET', path: '/api/v1/products', query: 'limit=5', expect: 200 },
  {
    name: 'Search products and pick the first',
    method: 'GET', path: '/api/v1/products', query: 'q=mug&limit=5', expect: 200,
    checks: ['pm.expect(json.items).to.be.an("array").that.is.not.empty;'],
    keep: { productId: 'json.items[0].id' },
  },
  { name: 'Product page', method: 'GET', path: '/api/v1/products/{id}', id: 'productId', expect: 200 },
  {
    name: 'Review the product',
    method: 'POST', path: '/api/v1/products/{id}/reviews', id: 'productId', auth: 'token', expect: 201,
    json: { rating: 5, comment: 'Holds a large coffee, keeps it warm.' },
    checks: ['pm.expect(json.rating).to.eql(5);'],
  },
  { name: 'Reviews of the product', method: 'GET', path: '/api/v1/products/{id}/reviews', id: 'productId', expect: 200 },
  {
    name: 'Similar items',
    method: 'GET', path: '/api/v1/products/{id}/similar', id: 'productId', query: 'limit=5', expect: 200,
  },
  {
    name: 'Create an order (Idempotency-Key makes it safe to repeat)',
    method: 'POST', path: '/api/v1/orders', auth: 'token', expect: 201,
    prerequest: "pm.collectionVariables.set('orderKey', 'order-' + pm.variables.replaceIn('{{$guid}}'));",
    headers: [['Idempotency-Key', '{{orderKey}}']],
    json: ORDER,
    checks: ["pm.expect(json.status).to.eql('PENDING_PAYMENT');"],
    keep: { orderId: 'json.id', orderTotal: 'json.total.amount' },
  },
  {
    name: 'The same key and body again: the first answer, nothing done twice',
    method: 'POST', path: '/api/v1/orders', auth: 'token', expect: 201,
    headers: [['Idempotency-Key', '{{orderKey}}']],
    json: ORDER,
    checks: ["pm.expect(json.id).to.eql(pm.collectionVariables.get('orderId'));"],
  },
  {
    name: 'Expected failure: the same key with another body',
    method: 'POST', path: '/api/v1/orders', auth: 'token', expect: 409,
    headers: [['Idempotency-Key', '{{orderKey}}']],
    json: { items: [{ product_id: '{{productId}}', quantity: 3 }], shipping_address: ADDRESS },
  },
  {
    name: 'Expected failure: a quantity below 1',
    method: 'POST', path: '/api/v1/orders', auth: 'token', expect: 422,
    headers: [['Idempotency-Key', 'order-{{$guid}}']],
    json: { items: [{ product_id: '{{productId}}', quantity: 0 }], shipping_address: ADDRESS },
  },
  {
    name: 'The order',
    method: 'GET', path: '/api/v1/orders/{id}', id: 'orderId', auth: 'token', expect: 200,
    checks: ["pm.expect(String(json.total.amount)).to.eql(pm.collectionVariables.get('orderTotal'));"],
  },
  { name: 'My orders', method: 'GET', path: '/api/v1/orders', auth: 'token', expect: 200 },
  {
    name: 'Pay with the test card that succeeds',
    method: 'POST', path: '/api/v1/orders/{id}/payment', id: 'orderId', auth: 'token', expect: 201,
    headers: [['Idempotency-Key', 'pay-{{$guid}}']],
    json: { card: CARD },
    checks: ["pm.expect(json.status).to.eql('SUCCEEDED');"],
    keep: { paymentId: 'json.id' },
  },
  {
    name: 'My payments',
    method: 'GET', path: '/api/v1/payments', auth: 'token', expect: 200,
    checks: ["pm.expect(json.items[0].id).to.eql(pm.collectionVariables.get('paymentId'));"],
  },
  {
    name: 'The shipment: a label is bought once the payment succeeded',
    method: 'GET', path: '/api/v1/orders/{id}/shipment', id: 'orderId', auth: 'token', expect: 200,
    poll: 15, until: "json.status === 'LABEL_CREATED'",
    keep: { trackingNumber: 'json.tracking_number' },
  },
  {
    name: 'Expected failure: a carrier update with a bad signature',
    method: 'POST', path: '/api/v1/shipping/webhook', expect: 401,
    headers: [['X-Signature', 'sha256=00']],
    json: { tracking_number: '{{trackingNumber}}', status: 'IN_TRANSIT', location: 'Chicago, IL' },
  },
  {
    name: 'The carrier picks the parcel up (signed webhook)',
    method: 'POST', path: '/api/v1/shipping/webhook', expect: 200,
    prerequest: [
      '// X-Signature: sha256=<hex HMAC-SHA256 of the body as sent>, keyed with webhookSecret.',
      "const cryptoJs = require('crypto-js');",
      'const sent = pm.variables.replaceIn(pm.request.body.raw);',
      "const mac = cryptoJs.HmacSHA256(sent, pm.variables.get('webhookSecret'));",
      "pm.variables.set('signature', 'sha256=' + mac.toString(cryptoJs.enc.Hex));",
    ].join('\n'),
    headers: [['X-Signature', '{{signature}}']],
    json: { tracking_number: '{{trackingNumber}}', status: 'IN_TRANSIT', location: 'Chicago, IL' },
    checks: ["pm.expect(json.status).to.eql('IN_TRANSIT');"],
  },
  {
    name: 'The order follows its shipment',
    method: 'GET', path: '/api/v1/orders/{id}', id: 'orderId', auth: 'token', expect: 200,
    poll: 15, until: "json.status === 'SHIPPED'",
  },
  { name: 'Notifications, newest first', method: 'GET', path: '/api/v1/notifications', auth: 'token', expect: 200 },
  {
    name: 'Recommendations for me',
    method: 'GET', path: '/api/v1/recommendations', query: 'limit=5', auth: 'token', expect: 200,
  },
  {
    name: 'A guest cart: no sign-in, its token reaches it',
    method: 'POST', path: '/api/v1/cart', expect: 201,
    keep: { cartToken: 'json.cart_token' },
  },
  {
    name: 'The guest adds the product (X-Cart-Token names the cart)',
    method: 'POST', path: '/api/v1/cart/items', expect: 200,
    headers: [['X-Cart-Token', '{{cartToken}}']],
    json: { product_id: '{{productId}}', quantity: 1 },
    checks: ['pm.expect(json.items[0].quantity).to.eql(1);'],
  },
  {
    name: "The guest's cart, priced now",
    method: 'GET', path: '/api/v1/cart', expect: 200,
    headers: [['X-Cart-Token', '{{cartToken}}']],
    checks: ["pm.expect(json.items[0].product_id).to.eql(pm.collectionVariables.get('productId'));"],
  },
  {
    name: "Signed in: the guest cart joins the customer's",
    method: 'POST', path: '/api/v1/cart/merge', auth: 'token', expect: 200,
    json: { cart_token: '{{cartToken}}' },
    checks: ['pm.expect(json.items[0].quantity).to.eql(1);'],
  },
  {
    name: 'Expected failure: the guest cart is gone after the merge',
    method: 'GET', path: '/api/v1/cart', expect: 401,
    headers: [['X-Cart-Token', '{{cartToken}}']],
  },
  {
    name: 'Check out the cart and pay (Idempotency-Key makes it safe to repeat)',
    method: 'POST', path: '/api/v1/cart/checkout', auth: 'token', expect: 201,
    headers: [['Idempotency-Key', 'checkout-{{$guid}}']],
    json: { shipping_address: ADDRESS, card: CARD },
    checks: ["pm.expect(json.order.status).to.eql('PAID');", "pm.expect(json.payment.status).to.eql('SUCCEEDED');"],
  },
  {
    name: 'The ordered lines left the cart',
    method: 'GET', path: '/api/v1/cart', auth: 'token', expect: 200,
    checks: ['pm.expect(json.items).to.eql([]);'],
  },
  {
    name: 'Admin logs in',
    method: 'POST', path: '/api/v1/auth/login', expect: 200,
    json: { email: '{{adminEmail}}', password: '{{adminPassword}}' },
    keep: { adminToken: 'json.access_token' },
  },
  {
    name: 'Admin lists the fault flags',
    method: 'GET', path: '/api/v1/admin/flags', auth: 'adminToken', expect: 200,
    checks: ['pm.expect(json.flags).to.be.an("array").that.is.not.empty;'],
    keep: { flagKey: 'json.flags[0].key' },
  },
  {
    name: 'Expected failure: a customer may not create products',
    method: 'POST', path: '/api/v1/products', auth: 'token', expect: 403,
    json: PRODUCT,
  },
  {
    name: 'Admin creates a product',
    method: 'POST', path: '/api/v1/products', auth: 'adminToken', expect: 201,
    json: PRODUCT,
    keep: { newProductId: 'json.id' },
  },
  {
    name: 'Admin sets its stock',
    method: 'PUT', path: '/api/v1/products/{id}/stock', id: 'newProductId', auth: 'adminToken', expect: 200,
    json: { stock: 25 },
    checks: ['pm.expect(json.stock_available).to.eql(25);'],
  },
  {
    name: 'Admin uploads an image of the product (multipart: its text alternative, then the file)',
    method: 'POST', path: '/api/v1/products/{id}/images', id: 'newProductId', auth: 'adminToken', expect: 201,
    formdata: [
      { key: 'alt', value: 'A round shrub in a terracotta pot (drawn for this collection)', type: 'text' },
      { key: 'file', type: 'file', src: '../desk-plant.png' },
    ],
    checks: ["pm.expect(json.content_type).to.eql('image/png');", 'pm.expect(json.width).to.eql(640);'],
    keep: { imageId: 'json.id', mediaKey: 'json.key', width: 'json.thumbnails[0].width' },
    description: 'The file is deploy/desk-plant.png; newman finds it from `--working-dir deploy/postman`.',
  },
  {
    name: 'Expected failure: a file that is not a JPEG, PNG or WebP image',
    method: 'POST', path: '/api/v1/products/{id}/images', id: 'newProductId', auth: 'adminToken', expect: 415,
    formdata: [
      { key: 'alt', value: 'Not a picture', type: 'text' },
      { key: 'file', type: 'file', src: '../shopmesh.http' },
    ],
    description: 'The file is deploy/shopmesh.http, text whatever its type says.',
  },
  {
    name: 'The product shows the image once product-svc has heard of it',
    method: 'GET', path: '/api/v1/products/{id}', id: 'newProductId', expect: 200,
    poll: 10, until: "json.images.length > 0 && json.images[0].id === pm.collectionVariables.get('imageId')",
  },
  {
    name: "Admin orders the product's images (primary first)",
    method: 'PUT', path: '/api/v1/products/{id}/images/order', id: 'newProductId', auth: 'adminToken', expect: 200,
    json: { image_ids: ['{{imageId}}'] },
  },
  {
    name: 'The image itself (public; its ETag is its key)',
    method: 'GET', path: '/media/{key}', id: 'mediaKey', expect: 200,
    keep: { mediaEtag: "pm.response.headers.get('ETag')" },
  },
  { name: 'Its 480-pixel-wide thumbnail', method: 'GET', path: '/media/{key}/480', id: 'mediaKey', expect: 200 },
  {
    name: 'Unchanged since it was read: no bytes again',
    method: 'GET', path: '/media/{key}', id: 'mediaKey', expect: 304,
    headers: [['If-None-Match', '{{mediaEtag}}']],
  },
  {
    name: 'Its first 100 bytes',
    method: 'GET', path: '/media/{key}', id: 'mediaKey', expect: 206,
    headers: [['Range', 'bytes=0-99']],
  },
  {
    name: 'Admin deletes the image (its bytes go once nothing uses them, after a grace period)',
    method: 'DELETE', path: '/api/v1/products/{id}/images/{imageId}', id: 'newProductId', auth: 'adminToken', expect: 204,
  },
  {
    name: 'The product no longer shows it',
    method: 'GET', path: '/api/v1/products/{id}', id: 'newProductId', expect: 200,
    poll: 10, until: 'json.images.length === 0',
  },
  {
    name: 'Admin trains the recommendation model (runs in the background)',
    method: 'POST', path: '/api/v1/admin/recommendations/train', auth: 'adminToken', expect: 202,
    json: {},
    keep: { modelVersion: 'json.model_version' },
  },
  {
    name: 'Admin reads the model being served, once the training is done',
    method: 'GET', path: '/api/v1/admin/recommendations/model', auth: 'adminToken', expect: 200,
    poll: 30, until: "json.model_version === pm.collectionVariables.get('modelVersion')",
  },
  {
    name: 'Admin refunds part of the payment',
    method: 'POST', path: '/api/v1/payments/{id}/refund', id: 'paymentId', auth: 'adminToken', expect: 201,
    headers: [['Idempotency-Key', 'refund-{{$guid}}']],
    json: { amount: { amount: 500, currency: 'USD' }, reason: 'Mug arrived chipped' },
    checks: ['pm.expect(json.amount.amount).to.eql(500);'],
  },
  {
    name: 'The payment shows what was refunded, once the provider settled it',
    method: 'GET', path: '/api/v1/payments/{id}', id: 'paymentId', auth: 'token', expect: 200,
    poll: 10, until: 'json.refunded_amount.amount === 500',
  },
];

// The template path of a step's URL in the document: `/media/{key}/480`
// is the operation `/media/{key}/{width}`.
function findOperation(doc, step) {
  const wanted = step.path.split('/');
  for (const path of Object.keys(doc.paths ?? {})) {
    const parts = path.split('/');
    if (parts.length !== wanted.length) continue;
    const same = parts.every((p, i) => p === wanted[i] || (p.startsWith('{') && wanted[i].startsWith('{')) ||
      (p.startsWith('{') && !wanted[i].startsWith('{') && i === parts.length - 1 && /^\d+$/.test(wanted[i])));
    if (same && doc.paths[path][step.method.toLowerCase()]) return { path, operation: doc.paths[path][step.method.toLowerCase()] };
  }
  throw new Error(`the Walkthrough sends ${step.method} ${step.path}, which the document does not have`);
}

function walkthroughTest(step) {
  const out = [];
  const problem = step.expect >= 400;
  const keepLines = Object.entries(step.keep ?? {}).map(
    ([name, expr]) => `pm.collectionVariables.set('${name}', String(${expr}));`,
  );
  const checks = step.checks ?? [];
  const bodyChecked = checks.length > 0 || Object.values(step.keep ?? {}).some((e) => e.includes('json'));
  const assertions = [
    `pm.test('status is ${step.expect}', function () {`,
    `    pm.response.to.have.status(${step.expect});`,
    `});`,
  ];
  if (problem) {
    assertions.push(
      `pm.test('the error is a problem document', function () {`,
      `    pm.expect(pm.response.headers.get('Content-Type')).to.match(/^application\\/problem\\+json/);`,
      `});`,
    );
  }
  if (bodyChecked) {
    assertions.push(
      `pm.test('the body says what it should', function () {`,
      ...checks.map((c) => `    ${c}`),
      ...keepLines.map((k) => `    ${k}`),
      `});`,
    );
  } else {
    assertions.push(...keepLines);
  }
  if (bodyChecked || step.until) {
    out.push('let json;', 'try { json = pm.response.json(); } catch (e) { json = {}; }');
  }
  if (step.poll) {
    const until = step.until ? ` && (${step.until})` : '';
    out.push(
      `// Reached asynchronously: sent again every 100 ms until it holds, for up to ${step.poll} s.`,
      `const deadline = Number(pm.collectionVariables.get('pollDeadline')) || Date.now() + ${step.poll * 1000};`,
      `let done = false;`,
      `try { done = pm.response.code === ${step.expect}${until}; } catch (e) { done = false; }`,
      `if (!done && Date.now() < deadline) {`,
      `    pm.collectionVariables.set('pollDeadline', String(deadline));`,
      `    postman.setNextRequest(pm.info.requestId);`,
      `    setTimeout(function () {}, 100);`,
      `} else {`,
      `    pm.collectionVariables.unset('pollDeadline');`,
      ...assertions.map((a) => `    ${a}`),
      ...(step.until ? [
        `    pm.test('it came to hold: ${step.until.replace(/'/g, "\\'")}', function () {`,
        `        pm.expect(done).to.be.true;`,
        `    });`,
      ] : []),
      `}`,
    );
  } else {
    out.push(...assertions);
  }
  return event('test', out.join('\n'));
}

function walkthroughRequest(doc, step) {
  const { path } = findOperation(doc, step);
  // The first parameter reads the step's `id` variable, any other its own.
  let first = true;
  const rawPath = step.path.replace(/\{([^}]+)\}/g, (_, name) => {
    const variable = first && step.id ? step.id : name;
    first = false;
    return `{{${variable}}}`;
  });
  const header = (step.headers ?? []).map(([key, value]) => ({ key, value }));
  const request = { auth: step.auth ? bearer(step.auth) : NOAUTH, method: step.method, header };
  if (step.json !== undefined) {
    header.push({ key: 'Content-Type', value: 'application/json' });
    request.body = { mode: 'raw', raw: jsonText(step.json), options: { raw: { language: 'json' } } };
  } else if (step.formdata) {
    request.body = { mode: 'formdata', formdata: step.formdata };
  }
  const query = (step.query ?? '')
    .split('&')
    .filter(Boolean)
    .map((pair) => {
      const [key, value] = pair.split('=');
      return { key, value };
    });
  request.url = url(`{{baseUrl}}${rawPath}`, query);
  const notes = [`${step.method} ${path}: expects ${step.expect}.`];
  if (step.description) notes.push(step.description);
  request.description = notes.join(' ');
  const events = [];
  if (step.prerequest) events.push(event('prerequest', step.prerequest));
  events.push(walkthroughTest(step));
  return { name: step.name, event: events, request, response: [] };
}

function walkthrough(doc) {
  return {
    name: WALKTHROUGH,
    description: [
      "A customer's and an admin's way through the shop, in order: register, log in, find a product,",
      'order it with an Idempotency-Key, pay with a test card, follow the shipment, use a guest cart',
      'and check out, then as admin create a product, upload and delete an image, train the',
      'recommendation model and refund. Each request checks the exact status it must answer and',
      'keeps what later requests need in collection variables. Run the folder from the top; set',
      'adminEmail, adminPassword and webhookSecret to what the mesh was started with.',
    ].join('\n'),
    item: STEPS.map((step) => walkthroughRequest(doc, step)),
  };
}

// ---------------------------------------------------------------- output

function collection(doc) {
  const variables = new Map();
  const folders = tagFolders(doc, variables);
  const stateNames = new Set(STATE.map(([name]) => name));
  const settingNames = new Set(SETTINGS.map(([name]) => name));
  for (const step of STEPS) {
    for (const name of Object.keys(step.keep ?? {})) {
      if (!stateNames.has(name) && !variables.has(name)) variables.set(name, '');
    }
  }
  const variable = [
    ...SETTINGS.map(([key, value, description]) => ({ key, value, description })),
    ...STATE.map(([key, description]) => (description ? { key, value: '', description } : { key, value: '' })),
    ...[...variables.keys()]
      .filter((key) => !stateNames.has(key) && !settingNames.has(key))
      .sort()
      .map((key) => ({ key, value: variables.get(key) })),
  ];
  const info = doc.info ?? {};
  return {
    info: {
      name: info.title ?? 'shopmesh',
      description: [
        info.description ?? '',
        '',
        `Generated by deploy/postman/generate.mjs from the gateway's OpenAPI document (version ${info.version ?? '?'});`,
        'regenerate it rather than editing it. Set baseUrl to the gateway, run the folder',
        'Walkthrough first (it logs in and keeps the ids the other folders use), then any folder.',
      ].join('\n').trim(),
      schema: SCHEMA,
    },
    item: [walkthrough(doc), ...folders],
    event: [
      event(
        'prerequest',
        [
          '// A card expiry that is always ahead (the examples are written with one).',
          "pm.variables.set('cardExpYear', String(new Date().getUTCFullYear() + 3));",
        ].join('\n'),
      ),
    ],
    variable,
  };
}

function main() {
  const [input, output] = process.argv.slice(2);
  if (!input) {
    console.error('usage: node deploy/postman/generate.mjs <openapi.json> [collection.json]');
    process.exit(2);
  }
  const doc = JSON.parse(readFileSync(input, 'utf8'));
  const out = output ?? join(dirname(fileURLToPath(import.meta.url)), 'shopmesh.postman_collection.json');
  writeFileSync(out, JSON.stringify(collection(doc), null, 2) + '\n');
  console.error(`wrote ${out}`);
}

main();
