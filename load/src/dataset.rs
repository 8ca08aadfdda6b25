//! The catalog and the baskets of the UCI Online Retail data set
//! (CC BY 4.0; Chen, D. (2015), https://doi.org/10.24432/C5BW33): products
//! by stock code with their name and price, and every invoice as a basket.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::Context as _;

/// The sample shipped with the crate (header and first 6,000 lines).
pub const SAMPLE: &[u8] = include_bytes!("../data/online_retail_sample.csv.gz");

/// Stock codes that are charges or adjustments, not products.
const NOT_PRODUCTS: &[&str] = &[
    "POST",
    "M",
    "D",
    "DOT",
    "BANK CHARGES",
    "AMAZONFEE",
    "CRUK",
    "PADS",
    "C2",
    "S",
    "B",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    pub stock_code: String,
    pub name: String,
    /// Pence.
    pub price: i64,
    /// Invoice lines it appears on.
    pub lines: u32,
}

impl Product {
    /// A SKU the catalog accepts: `OR-` and the stock code.
    pub fn sku(&self) -> String {
        format!("OR-{}", self.stock_code)
    }

    /// A category slug from the last word of the name (`HOLDER`, `BAG`…).
    pub fn category(&self) -> String {
        let word: String = self
            .name
            .split_whitespace()
            .last()
            .unwrap_or("misc")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if word.is_empty() {
            "misc".into()
        } else {
            word.chars().take(50).collect()
        }
    }
}

/// One invoice: the stock codes bought together, with quantities.
pub type Basket = Vec<(String, u32)>;

#[derive(Debug, Default)]
pub struct Dataset {
    /// Most-bought first.
    pub products: Vec<Product>,
    pub baskets: Vec<Basket>,
    /// Words of product names, for searches.
    pub words: Vec<String>,
}

impl Dataset {
    /// Reads a `.csv.gz` (or plain `.csv`) file, at most `max_rows` lines.
    pub fn load(path: &Path, max_rows: Option<usize>) -> anyhow::Result<Dataset> {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
            Box::new(flate2::read::GzDecoder::new(file))
        } else {
            Box::new(file)
        };
        Self::parse(BufReader::new(reader), max_rows)
            .with_context(|| format!("reading {}", path.display()))
    }

    /// The sample shipped with the crate.
    pub fn sample() -> Dataset {
        Self::parse(BufReader::new(flate2::read::GzDecoder::new(SAMPLE)), None)
            .expect("the shipped sample parses")
    }

    pub fn parse(reader: impl BufRead, max_rows: Option<usize>) -> anyhow::Result<Dataset> {
        let mut products: HashMap<String, Product> = HashMap::new();
        let mut invoices: HashMap<String, Basket> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut lines = reader.lines();
        let header = lines.next().context("empty file")??;
        anyhow::ensure!(
            header
                .trim_start_matches('\u{feff}')
                .starts_with("InvoiceNo,StockCode,Description,Quantity"),
            "not the Online Retail CSV: header {header:?}"
        );
        for (n, line) in lines.enumerate() {
            if max_rows.is_some_and(|max| n >= max) {
                break;
            }
            let line = line?;
            let fields = split_csv(&line);
            let [invoice, code, name, quantity, _date, price, ..] = fields.as_slice() else {
                continue;
            };
            let (Ok(quantity), Ok(price)) = (quantity.parse::<i64>(), price.parse::<f64>()) else {
                continue;
            };
            let name = name.trim();
            if invoice.starts_with('C')
                || quantity <= 0
                || price <= 0.0
                || name.is_empty()
                || NOT_PRODUCTS.contains(&code.as_str())
            {
                continue;
            }
            let product = products.entry(code.clone()).or_insert_with(|| Product {
                stock_code: code.clone(),
                name: name.to_string(),
                price: (price * 100.0).round() as i64,
                lines: 0,
            });
            product.lines += 1;
            let basket = invoices.entry(invoice.clone()).or_insert_with(|| {
                order.push(invoice.clone());
                Vec::new()
            });
            if !basket.iter().any(|(c, _)| c == code) {
                basket.push((code.clone(), quantity.clamp(1, 1000) as u32));
            }
        }
        let mut products: Vec<Product> = products.into_values().collect();
        products.sort_by(|a, b| b.lines.cmp(&a.lines).then(a.stock_code.cmp(&b.stock_code)));
        let mut words: Vec<String> = products
            .iter()
            .take(500)
            .flat_map(|p| {
                p.name
                    .split_whitespace()
                    .map(|w| {
                        w.trim_matches(|c: char| !c.is_ascii_alphabetic())
                            .to_ascii_lowercase()
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|w| w.len() >= 4 && w.chars().all(|c| c.is_ascii_alphabetic()))
            .collect();
        words.sort();
        words.dedup();
        let baskets = order
            .into_iter()
            .filter_map(|i| invoices.remove(&i))
            .collect();
        Ok(Dataset {
            products,
            baskets,
            words,
        })
    }
}

/// Splits one CSV line: fields may be quoted, with `""` for a quote.
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields_keep_their_commas_and_quotes() {
        assert_eq!(
            split_csv(r#"536477,22041,"RECORD FRAME 7"" SINGLE, SIZE ",48"#),
            ["536477", "22041", r#"RECORD FRAME 7" SINGLE, SIZE "#, "48"]
        );
        assert_eq!(split_csv("a,,b"), ["a", "", "b"]);
    }

    #[test]
    fn cancellations_charges_and_bad_lines_are_left_out() {
        let csv = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n\
            1,A1,RED MUG,6,2010-12-01T08:26:00,2.55,17850,United Kingdom\n\
            1,B2,\"LANTERN, WHITE\",2,2010-12-01T08:26:00,3.39,17850,United Kingdom\n\
            1,POST,POSTAGE,1,2010-12-01T08:26:00,18,17850,United Kingdom\n\
            C2,A1,RED MUG,-1,2010-12-01T08:26:00,2.55,17850,United Kingdom\n\
            2,A1,RED MUG,1,2010-12-01T08:26:00,2.55,,United Kingdom\n\
            3,Z9,,1,2010-12-01T08:26:00,1.0,,United Kingdom\n\
            4,Y8,FREE THING,1,2010-12-01T08:26:00,0,,United Kingdom\n\
            garbage\n";
        let data = Dataset::parse(csv.as_bytes(), None).unwrap();
        let codes: Vec<&str> = data
            .products
            .iter()
            .map(|p| p.stock_code.as_str())
            .collect();
        assert_eq!(codes, ["A1", "B2"], "most-bought first");
        assert_eq!(data.products[0].price, 255);
        assert_eq!(data.products[1].name, "LANTERN, WHITE");
        assert_eq!(data.products[1].category(), "white");
        assert_eq!(data.products[1].sku(), "OR-B2");
        assert_eq!(
            data.baskets,
            vec![
                vec![("A1".to_string(), 6), ("B2".to_string(), 2)],
                vec![("A1".to_string(), 1)]
            ]
        );
        assert!(data.words.contains(&"lantern".to_string()));
    }

    #[test]
    fn another_file_is_refused() {
        let err = Dataset::parse("id,name\n1,x\n".as_bytes(), None).unwrap_err();
        assert!(
            err.to_string().contains("not the Online Retail CSV"),
            "{err}"
        );
    }

    #[test]
    fn the_shipped_sample_has_products_and_baskets() {
        let data = Dataset::sample();
        assert!(data.products.len() > 500, "{}", data.products.len());
        assert!(data.baskets.len() > 200, "{}", data.baskets.len());
        assert!(data.products.windows(2).all(|w| w[0].lines >= w[1].lines));
    }
}
