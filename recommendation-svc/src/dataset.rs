//! Reading invoice lines in the Online Retail format (UCI Machine Learning
//! Repository, dataset 352, CC BY 4.0: Chen, D. (2015), Online Retail,
//! https://doi.org/10.24432/C5BW33): `InvoiceNo, StockCode, Description,
//! Quantity, InvoiceDate, UnitPrice, CustomerID, Country`, one invoice
//! line a row, with a header row.
//!
//! Used by the import command, the offline evaluation and the quality
//! test. A row that does not parse is reported with its line number and
//! skipped; rows that parse but are not purchases of a product by a known
//! customer (cancellations, returns, postage and fees, guest purchases)
//! are counted separately.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead;

use crate::model::{TestCase, TrainingData, UserItems};

/// Stock codes that are not products (postage, fees, adjustments).
pub const NON_PRODUCT_CODES: &[&str] = &[
    "POST",
    "M",
    "D",
    "DOT",
    "BANK CHARGES",
    "AMAZONFEE",
    "CRUK",
    "PADS",
    "C2",
];

/// One parsed invoice line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetailLine {
    /// 1-based line number in the file (the header is line 1).
    pub line: u64,
    pub invoice: String,
    pub stock_code: String,
    pub quantity: i64,
    /// Unix seconds (the file's local time read as UTC).
    pub at: i64,
    /// Empty for guest purchases.
    pub customer: String,
}

impl RetailLine {
    /// A purchase of a product by a known customer.
    pub fn is_purchase(&self) -> bool {
        !self.customer.is_empty()
            && self.quantity > 0
            && !self.invoice.starts_with('C')
            && !NON_PRODUCT_CODES.contains(&self.stock_code.as_str())
    }
}

/// A row that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub line: u64,
    pub reason: String,
}

/// What reading a file gave.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Purchases of products by known customers.
    pub purchases: Vec<RetailLine>,
    /// Rows read but not purchases (cancellations, fees, guests…).
    pub skipped: u64,
    pub malformed: Vec<Malformed>,
    pub rows: u64,
}

/// Reads every row of `input`, calling `each` for every purchase (so a
/// large file can be streamed); returns the counts and malformed rows.
pub fn read(input: impl BufRead, mut each: impl FnMut(RetailLine)) -> Parsed {
    let mut parsed = Parsed::default();
    for (n, row) in input.split(b'\n').enumerate() {
        let line = n as u64 + 1;
        let row = match row {
            Ok(bytes) => bytes,
            Err(err) => {
                parsed.malformed.push(Malformed {
                    line,
                    reason: format!("unreadable: {err}"),
                });
                break;
            }
        };
        let Ok(text) = std::str::from_utf8(&row) else {
            parsed.rows += 1;
            parsed.malformed.push(Malformed {
                line,
                reason: "not UTF-8".into(),
            });
            continue;
        };
        let text = text.trim_end_matches('\r');
        if line == 1 && text.starts_with("InvoiceNo") {
            continue;
        }
        if text.is_empty() {
            continue;
        }
        parsed.rows += 1;
        match parse_row(line, text) {
            Ok(r) if r.is_purchase() => each(r),
            Ok(_) => parsed.skipped += 1,
            Err(reason) => parsed.malformed.push(Malformed { line, reason }),
        }
    }
    parsed
}

/// Reads every purchase into memory.
pub fn read_all(input: impl BufRead) -> Parsed {
    let mut purchases = Vec::new();
    let mut parsed = read(input, |r| purchases.push(r));
    parsed.purchases = purchases;
    parsed
}

fn parse_row(line: u64, text: &str) -> Result<RetailLine, String> {
    let fields = split_csv(text)?;
    if fields.len() != 8 {
        return Err(format!("expected 8 fields, found {}", fields.len()));
    }
    let invoice = fields[0].trim().to_string();
    let stock_code = fields[1].trim().to_string();
    if invoice.is_empty() || stock_code.is_empty() {
        return Err("empty InvoiceNo or StockCode".into());
    }
    let quantity = fields[3]
        .trim()
        .parse::<i64>()
        .map_err(|_| format!("Quantity {:?} is not a whole number", fields[3]))?;
    let at = parse_datetime(fields[4].trim())
        .ok_or_else(|| format!("InvoiceDate {:?} is not YYYY-MM-DDTHH:MM:SS", fields[4]))?;
    let customer = fields[6].trim();
    let customer = customer.strip_suffix(".0").unwrap_or(customer).to_string();
    if !customer.is_empty() && !customer.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("CustomerID {customer:?} is not a number"));
    }
    Ok(RetailLine {
        line,
        invoice,
        stock_code,
        quantity,
        at,
        customer,
    })
}

/// Splits one CSV row (RFC 4180 quoting, no newlines inside fields).
fn split_csv(text: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
        } else if c == '"' && at_start {
            quoted = true;
            at_start = false;
        } else if c == ',' {
            fields.push(std::mem::take(&mut field));
            at_start = true;
        } else {
            field.push(c);
            at_start = false;
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    fields.push(field);
    Ok(fields)
}

/// `YYYY-MM-DDTHH:MM[:SS]` (or with a space) as unix seconds, read as UTC.
pub fn parse_datetime(s: &str) -> Option<i64> {
    let (date, time) = s.split_once(['T', ' '])?;
    let mut d = date.split('-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    if d.next().is_some() {
        return None;
    }
    let mut t = time.split(':');
    let hour: i64 = t.next()?.parse().ok()?;
    let minute: i64 = t.next()?.parse().ok()?;
    let second: i64 = t.next().map(str::parse).transpose().ok()?.unwrap_or(0);
    if t.next().is_some()
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// `YYYY-MM-DD` as unix seconds at midnight UTC.
pub fn parse_date(s: &str) -> Option<i64> {
    parse_datetime(&format!("{s}T00:00"))
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A temporal split: train on purchases before `cutoff`; test each
/// customer known before it on the products they bought on or after it
/// that they had not bought before (products sold before the cutoff: a
/// model cannot know the others).
#[derive(Debug, Default)]
pub struct Split {
    pub train: TrainingData,
    /// Customer id of each training user, in `train.users` order.
    pub customers: Vec<String>,
    pub cases: Vec<TestCase>,
}

pub fn temporal_split(purchases: &[RetailLine], cutoff: i64) -> Split {
    let mut before: BTreeMap<&str, UserItems> = BTreeMap::new();
    let mut after: HashMap<&str, HashSet<&str>> = HashMap::new();
    for p in purchases {
        if p.at < cutoff {
            let items = before.entry(&p.customer).or_default();
            let at = items.entry(p.stock_code.clone()).or_insert(p.at);
            *at = (*at).max(p.at);
        } else {
            after.entry(&p.customer).or_default().insert(&p.stock_code);
        }
    }
    let known: HashSet<&str> = before
        .values()
        .flat_map(|items| items.keys().map(String::as_str))
        .collect();
    let mut split = Split::default();
    for (customer, items) in &before {
        if let Some(later) = after.get(customer) {
            let relevant: HashSet<String> = later
                .iter()
                .filter(|p| !items.contains_key(**p) && known.contains(**p))
                .map(|p| p.to_string())
                .collect();
            if !relevant.is_empty() {
                split.cases.push(TestCase {
                    user: customer.to_string(),
                    history: items.clone(),
                    relevant,
                });
            }
        }
        split.customers.push(customer.to_string());
        split.train.users.push(items.clone());
    }
    split
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n\
536365,85123A,WHITE HANGING HEART,6,2010-12-01T08:26:00,2.55,17850,United Kingdom\n\
536381,82567,\"AIRLINE LOUNGE,METAL SIGN\",2,2010-12-01T09:41:00,2.1,15311,United Kingdom\n\
C536379,D,Discount,-1,2010-12-01T09:41:00,27.5,14527,United Kingdom\n\
536370,POST,POSTAGE,3,2010-12-01T08:45:00,18,12583,France\n\
536414,22139,GUEST LINE,56,2010-12-01T11:52:00,0,,United Kingdom\n\
536999,22139,BAD QUANTITY,many,2010-12-01T11:52:00,0,12583,France\n\
537000,22139,BAD DATE,1,yesterday,0,12583,France\n\
537001,22139,\"UNTERMINATED,1,2010-12-01T11:52:00,0,12583,France\n\
537002,22139,TOO FEW,1\n\
537003,82567,LATER,1,2011-10-01T10:00:00,1,17850,United Kingdom\n";

    #[test]
    fn rows_are_parsed_skipped_or_reported_by_line() {
        let parsed = read_all(SAMPLE.as_bytes());
        assert_eq!(parsed.rows, 10);
        let codes: Vec<&str> = parsed
            .purchases
            .iter()
            .map(|p| p.stock_code.as_str())
            .collect();
        assert_eq!(codes, vec!["85123A", "82567", "82567"]);
        assert_eq!(parsed.skipped, 3, "cancellation, postage, guest");
        let lines: Vec<u64> = parsed.malformed.iter().map(|m| m.line).collect();
        assert_eq!(lines, vec![7, 8, 9, 10]);
        assert_eq!(parsed.purchases[1].line, 3);
    }

    #[test]
    fn dates_are_read_as_utc() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00"), Some(0));
        assert_eq!(parse_datetime("2010-12-01T08:26:00"), Some(1_291_191_960));
        assert_eq!(parse_date("2011-09-01"), Some(1_314_835_200));
        assert_eq!(parse_datetime("2011-13-01T00:00"), None);
        assert_eq!(parse_datetime("2011-01-01"), None);
    }

    #[test]
    fn the_split_tests_only_new_products_of_known_customers() {
        let parsed = read_all(SAMPLE.as_bytes());
        let split = temporal_split(&parsed.purchases, parse_date("2011-01-01").unwrap());
        assert_eq!(split.customers, vec!["15311", "17850"]);
        assert_eq!(split.cases.len(), 1);
        assert_eq!(split.cases[0].user, "17850");
        assert!(split.cases[0].relevant.contains("82567"));
    }
}
