// Browser journeys through the pages in Debian's chromium, driven by
// playwright-core, with an axe-core accessibility check of every page
// visited. Run by tests/browser.rs, which starts the shop and passes:
// BASE_URL, ADMIN_EMAIL, ADMIN_PASSWORD, WEBHOOK_SECRET, PRODUCTS (JSON
// {mug, lamp}), IMAGE (a PNG to upload), SCREENSHOTS (a directory) and
// BROWSER_TOOLS (where playwright-core and axe-core are installed).
import { createRequire } from 'node:module';
import { createHmac } from 'node:crypto';
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

const need = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const require = createRequire(join(need('BROWSER_TOOLS'), '/'));
const { chromium } = require('playwright-core');
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const BASE = need('BASE_URL');
const PRODUCTS = JSON.parse(need('PRODUCTS'));
const SHOTS = need('SCREENSHOTS');
mkdirSync(SHOTS, { recursive: true });
const DEADLINE = 15000;

const problems = [];
const checked = new Set();

function fail(message) {
  throw new Error(message);
}

// Every page once: no axe violation of impact serious or critical.
async function audit(page, name) {
  const path = new URL(page.url()).pathname.replace(/[0-9a-f-]{36}/g, '{id}');
  if (checked.has(path)) return;
  checked.add(path);
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  for (const v of result.violations) {
    if (v.impact === 'serious' || v.impact === 'critical') {
      problems.push(`${name} (${path}): ${v.id} [${v.impact}] ${v.help}: ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')}`);
    }
  }
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

async function expectText(locator, text, what) {
  const deadline = Date.now() + DEADLINE;
  let seen = '';
  while (Date.now() < deadline) {
    seen = (await locator.textContent().catch(() => '')) || '';
    if (seen.includes(text)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  fail(`${what}: expected "${text}", saw "${seen.trim().slice(0, 200)}"`);
}

async function fillCard(page, number) {
  await page.fill('#card_number', number);
  await page.fill('#exp_month', '12');
  await page.fill('#exp_year', '2031');
  await page.fill('#cvc', '123');
}

async function fillAddress(page) {
  await page.fill('#name', 'Ada Lovelace');
  await page.fill('#line1', '1 Main St');
  await page.fill('#city', 'Springfield');
  await page.fill('#postal_code', '12345');
  await page.fill('#country', 'US');
}

async function api(path, options = {}) {
  const response = await fetch(BASE + path, options);
  const text = await response.text();
  let body = null;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: response.status, body };
}

async function adminToken() {
  const r = await api('/api/v1/auth/login', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: need('ADMIN_EMAIL'), password: need('ADMIN_PASSWORD') }),
  });
  if (r.status !== 200) fail(`admin login: ${r.status}`);
  return r.body.access_token;
}

async function carrierUpdate(orderId, status) {
  const token = await adminToken();
  const deadline = Date.now() + DEADLINE;
  let shipment;
  while (Date.now() < deadline) {
    const r = await api(`/api/v1/orders/${orderId}/shipment`, { headers: { authorization: `Bearer ${token}` } });
    if (r.status === 200 && r.body.tracking_number) { shipment = r.body; break; }
    await new Promise((res) => setTimeout(res, 100));
  }
  if (!shipment) fail('no shipment was prepared for the paid order');
  const body = JSON.stringify({ tracking_number: shipment.tracking_number, status, location: 'Depot' });
  const signature = 'sha256=' + createHmac('sha256', need('WEBHOOK_SECRET')).update(body).digest('hex');
  const r = await api('/api/v1/shipping/webhook', {
    method: 'POST', headers: { 'content-type': 'application/json', 'x-signature': signature }, body,
  });
  if (r.status !== 200) fail(`carrier update: ${r.status} ${JSON.stringify(r.body)}`);
}

async function signUp(page, name) {
  const email = `${name}-${Date.now()}-${Math.floor(Math.random() * 1e6)}@example.com`;
  await page.fill('#name', name);
  await page.fill('#email', email);
  await page.fill('#password', 'correct horse');
  await page.click('form[action="/signup"] button[type=submit]');
  return email;
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-background-networking'],
});

async function guestToPaidOrder() {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  await page.goto(BASE + '/');
  await audit(page, 'home');
  await shot(page, 'home');
  // Search with the keyboard.
  await page.focus('#site-search');
  await page.keyboard.type('mug');
  await page.keyboard.press('Enter');
  await page.waitForURL(/\/search\?q=mug/);
  await audit(page, 'search');
  await page.click('text=Enamel mug');
  await page.waitForURL(/\/products\//);
  await audit(page, 'product');
  await shot(page, 'product');
  await page.fill('#quantity', '2');
  await page.click('button:has-text("Add to cart")');
  await page.waitForURL(/\/cart$/);
  await page.goto(BASE + `/products/${PRODUCTS.lamp}`);
  await page.click('button:has-text("Add to cart")');
  await page.waitForURL(/\/cart$/);
  await expectText(page.locator('#subtotal'), '64.99 USD', 'cart subtotal');
  await audit(page, 'cart');
  await shot(page, 'cart');
  // Sign up from the cart: the guest cart comes along to checkout.
  await page.click('text=create an account');
  await page.waitForURL(/\/signup/);
  await audit(page, 'signup');
  await signUp(page, 'shopper');
  await page.waitForURL(/\/checkout$/);
  await expectText(page.locator('main'), 'Enamel mug', 'checkout shows the merged cart');
  await audit(page, 'checkout');
  await fillAddress(page);
  await fillCard(page, '4242424242424242');
  await shot(page, 'checkout');
  await page.click('button:has-text("Place order and pay")');
  await page.waitForURL(/\/orders\/[0-9a-f-]{36}$/);
  const orderId = page.url().split('/').pop();
  await expectText(page.locator('#order-status'), 'Paid', 'order status');
  await audit(page, 'order');
  // The carrier's update shows on the open page, live.
  await carrierUpdate(orderId, 'IN_TRANSIT');
  await expectText(page.locator('#shipment-status'), 'In transit', 'live shipment status');
  await shot(page, 'order');

  // A declined card: the message in place, then paid again.
  await page.goto(BASE + `/products/${PRODUCTS.mug}`);
  await page.click('button:has-text("Add to cart")');
  await page.waitForURL(/\/cart$/);
  await page.click('text=Check out');
  await page.waitForURL(/\/checkout$/);
  await fillAddress(page);
  await fillCard(page, '4000000000000002');
  await page.click('button:has-text("Place order and pay")');
  await page.waitForURL(/\/orders\/[0-9a-f-]{36}$/);
  const declinedId = page.url().split('/').pop();
  await expectText(page.locator('main'), 'The payment was declined', 'decline message');
  await fillCard(page, '4242424242424242');
  await page.click('button:has-text("Pay")');
  await expectText(page.locator('#order-status'), 'Paid', 'paid after a decline');

  for (const path of ['/orders', '/notifications', '/account']) {
    await page.goto(BASE + path);
    await audit(page, path);
  }
  // A customer is refused the admin pages.
  const refused = await page.goto(BASE + '/admin');
  if (refused.status() !== 403) fail(`a customer opened /admin: ${refused.status()}`);
  await audit(page, 'refused');
  return { context, page, declinedId };
}

async function adminJourney(customer) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  await page.goto(BASE + '/signin?next=/admin');
  await audit(page, 'signin');
  await page.fill('#email', need('ADMIN_EMAIL'));
  await page.fill('#password', need('ADMIN_PASSWORD'));
  await page.click('form[action="/signin"] button[type=submit]');
  await page.waitForURL(/\/admin$/);
  await expectText(page.locator('#overall'), 'ok', 'the mesh is healthy');
  await audit(page, 'admin');
  await shot(page, 'admin-health');
  // Upload an image; it appears on the product page.
  await page.goto(BASE + `/admin/products/${PRODUCTS.mug}`);
  await audit(page, 'admin product');
  await page.fill('#alt', 'A blue enamel mug');
  await page.setInputFiles('#file', need('IMAGE'));
  await page.click('button:has-text("Upload")');
  await page.waitForURL(new RegExp(`/admin/products/${PRODUCTS.mug}$`));
  await expectText(page.locator('main'), 'primary', 'the uploaded image is listed');
  await shot(page, 'admin-product');
  const shop = await context.newPage();
  await shop.goto(BASE + `/products/${PRODUCTS.mug}`);
  const image = shop.locator('figure.primary img');
  await image.waitFor({ timeout: DEADLINE });
  const alt = await image.getAttribute('alt');
  if (alt !== 'A blue enamel mug') fail(`the image's alt is ${alt}`);
  const loaded = await image.evaluate((img) => img.complete && img.naturalWidth > 0);
  if (!loaded) fail('the uploaded image did not load');
  await shot(shop, 'product-with-image');
  for (const path of ['/admin/products', '/admin/orders', '/admin/payments', '/admin/recommendations', '/admin/dead-letters', '/admin/flags']) {
    await page.goto(BASE + path);
    await audit(page, path);
  }
  // A promotion reaches the customer's open notifications page, live.
  await customer.page.goto(BASE + '/notifications');
  await page.goto(BASE + '/admin/promotions');
  await page.fill('#promo-title', 'Spring sale');
  await page.fill('#promo-body', 'Everything 10% off this week.');
  await page.click('button:has-text("Send to customers")');
  await expectText(page.locator('#promotions'), 'done', 'the promotion went out');
  await audit(page, '/admin/promotions');
  await expectText(customer.page.locator('#feed'), 'Spring sale', 'the promotion arrives live');
  // Refund the customer's order; their page shows it.
  await page.goto(BASE + `/admin/orders/${customer.declinedId}`);
  await audit(page, 'admin order');
  await page.click('button:has-text("Cancel the order and refund it")');
  await expectText(page.locator('#order-status'), 'Refunded', 'admin sees the refund');
  await customer.page.goto(BASE + `/orders/${customer.declinedId}`);
  await expectText(customer.page.locator('#order-status'), 'Refunded', 'customer sees the refund');
  await context.close();
}

async function withoutJavaScript() {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto(BASE + `/products/${PRODUCTS.lamp}`);
  await page.click('button:has-text("Add to cart")');
  await page.waitForURL(/\/cart$/);
  await page.click('text=Sign in to check out');
  await page.waitForURL(/\/signin/);
  await page.click('text=Create an account');
  await page.waitForURL(/\/signup/);
  await signUp(page, 'nojs');
  await page.waitForURL(/\/checkout$/);
  await fillAddress(page);
  await fillCard(page, '4242424242424242');
  await page.click('button:has-text("Place order and pay")');
  await page.waitForURL(/\/orders\/[0-9a-f-]{36}$/);
  const deadline = Date.now() + DEADLINE;
  while (!((await page.textContent('#order-status')) || '').includes('Paid')) {
    if (Date.now() > deadline) fail('without JavaScript the order never showed Paid');
    await page.waitForTimeout(200);
    await page.reload();
  }
  await context.close();
}

try {
  const customer = await guestToPaidOrder();
  await adminJourney(customer);
  await withoutJavaScript();
  await page404();
} finally {
  await browser.close();
}

async function page404() {
  const context = await browser.newContext();
  const page = await context.newPage();
  const r = await page.goto(BASE + '/products/00000000-0000-0000-0000-000000000000');
  if (r.status() !== 404) fail(`an unknown product answered ${r.status()}`);
  await audit(page, 'not found');
  const unknown = await page.goto(BASE + '/no-such-page');
  if (unknown.status() !== 404) fail(`an unknown path answered ${unknown.status()}`);
  if (!(unknown.headers()['content-type'] || '').startsWith('text/html')) fail('an unknown path is not a page for a browser');
  await context.close();
}

if (problems.length) {
  console.error(`accessibility violations (serious or critical):\n${problems.join('\n')}`);
  process.exit(1);
}
console.log(`journeys passed; ${checked.size} pages checked with axe-core, no serious or critical violations`);
