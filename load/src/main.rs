//! `shopmesh-load`: load generator for a running shopmesh deployment.
//! `shopmesh-load --help` lists the options.

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use shopmesh_load::{Options, parse_duration, parse_mix};

const HELP: &str = "\
shopmesh-load: drives a running shopmesh deployment with virtual shoppers

USAGE: shopmesh-load [OPTIONS]

  --base-url URL        gateway to load (default http://127.0.0.1:8080)
  --users N             virtual users (default 16)
  --duration D          length of the run: 30s, 2m, ... (default 30s)
  --ramp-up D           users start spread over this time (default 5s)
  --mix LIST            weights, e.g. browse=20,search=15,product=30,similar=8,
                        recommendations=7,order=6,pay=4,cancel=2,cart-add=5,
                        checkout=3 (the default); operations left out are not
                        run. The pages, as a browser asks for them (HTML):
                        page-home, page-search, page-product, page-cart,
                        page-checkout; `--mix browser` is
                        page-home=20,page-search=20,page-product=40,
                        page-cart=15,page-checkout=5
  --seed-catalog N      first create the N most-bought products of the data
                        set through the admin API (needs ADMIN_EMAIL and
                        ADMIN_PASSWORD in the environment)
  --dataset PATH        the Online Retail CSV (.csv or .csv.gz); default
                        ../shared/datasets/online-retail/online_retail.csv.gz
                        when it exists, else the sample built in
  --dataset-rows N      read only the first N lines of it
  --timeout D           per-request timeout (default 10s)
  --think-time D        pause of each user between operations (default 0)
  --in-order            run the mix in order rather than at random (every
                        operation within each user's first round)
  --json                print the report as JSON instead of a table
  --quiet               no progress line
  -h, --help            this text

Data: Online Retail, UCI Machine Learning Repository (Chen, D., 2015,
https://doi.org/10.24432/C5BW33), CC BY 4.0.
";

const SHARED_DATASET: &str = "../shared/datasets/online-retail/online_retail.csv.gz";

fn parse(args: impl Iterator<Item = String>) -> anyhow::Result<Option<(Options, bool)>> {
    let mut options = Options {
        admin_email: std::env::var("ADMIN_EMAIL").ok(),
        admin_password: std::env::var("ADMIN_PASSWORD").ok(),
        ..Options::default()
    };
    let mut json = false;
    let mut dataset_given = false;
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> anyhow::Result<String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))
        };
        let number = |text: String, what: &str| -> anyhow::Result<usize> {
            text.parse()
                .map_err(|_| anyhow::anyhow!("{what} must be a whole number, not {text:?}"))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--base-url" => options.base_url = value()?,
            "--users" => options.users = number(value()?, "--users")?,
            "--duration" => options.duration = parse_duration(&value()?)?,
            "--ramp-up" => options.ramp_up = parse_duration(&value()?)?,
            "--mix" => options.mix = parse_mix(&value()?)?,
            "--seed-catalog" => options.seed_catalog = Some(number(value()?, "--seed-catalog")?),
            "--dataset" => {
                options.dataset = Some(value()?.into());
                dataset_given = true;
            }
            "--dataset-rows" => options.dataset_rows = Some(number(value()?, "--dataset-rows")?),
            "--timeout" => options.request_timeout = parse_duration(&value()?)?,
            "--think-time" => options.think_time = parse_duration(&value()?)?,
            "--json" => json = true,
            "--in-order" => options.in_order = true,
            "--quiet" => options.progress = false,
            other => anyhow::bail!("unknown option {other} (see --help)"),
        }
    }
    anyhow::ensure!(options.users > 0, "--users must be at least 1");
    if !dataset_given && std::path::Path::new(SHARED_DATASET).exists() {
        options.dataset = Some(SHARED_DATASET.into());
    }
    Ok(Some((options, json)))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (options, json) = match parse(std::env::args().skip(1)) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("shopmesh-load: {err:#}");
            return ExitCode::from(2);
        }
    };
    match shopmesh_load::run(options).await {
        Ok(report) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(report) => {
            print!("{}", report.table());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("shopmesh-load: {err:#}");
            ExitCode::FAILURE
        }
    }
}
