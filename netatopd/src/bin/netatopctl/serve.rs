//! `netatopctl serve`: the counters over HTTP for Prometheus to scrape.
//! Each `GET /metrics` asks netatopd's control socket afresh and answers
//! in OpenMetrics or the Prometheus text format, as the scraper's
//! `Accept` prefers, with `_created` for every counter. It needs nothing
//! but a connection to the control socket: no BPF, no privilege.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{anyhow, Result};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::export::{write_metrics, By, Format, Metrics};
use crate::{Args, Source};

#[derive(clap::Args, Debug)]
pub struct Opts {
    /// Address and port to listen on, e.g. 127.0.0.1:9977 or [::]:9977.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Series per process or command name, or per cgroup, systemd unit,
    /// container or pod, as `export --by`.
    #[arg(long, value_enum, default_value = "pid")]
    by: By,
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The format an `Accept` header prefers: OpenMetrics when it names
/// `application/openmetrics-text` with a quality at least that of
/// `text/plain` (or of `*/*`); else the Prometheus text format, the
/// default of every scraper.
pub fn negotiate(accept: Option<&str>) -> Format {
    let quality = |want: &str| {
        accept
            .unwrap_or("")
            .split(',')
            .filter_map(|range| {
                let mut parts = range.split(';').map(str::trim);
                let media = parts.next()?;
                if media != want {
                    return None;
                }
                let q = parts
                    .filter_map(|p| p.strip_prefix("q="))
                    .find_map(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                Some(q)
            })
            .fold(None, |best: Option<f32>, q| {
                Some(best.map_or(q, |b| b.max(q)))
            })
    };
    let om = quality("application/openmetrics-text").unwrap_or(0.0);
    let text = quality("text/plain")
        .or_else(|| quality("*/*"))
        .unwrap_or(0.0);
    if om > 0.0 && om >= text {
        Format::Openmetrics
    } else {
        Format::Prometheus
    }
}

/// One scrape's body in `format`: the counters, `netatopd_up` and the
/// scrape's duration; `netatopd_up` 0 (and why, on standard error) when
/// netatopd does not answer.
fn scrape(args: &Args, by: By, format: Format) -> Vec<u8> {
    let start = Instant::now();
    let got = Source::open(args, Some("serve")).and_then(|mut s| Metrics::collect(&mut s, by));
    let up = if got.is_ok() { 1.0 } else { 0.0 };
    if let Err(e) = &got {
        eprintln!("netatopctl serve: {e:#}");
    }
    let gauges = [
        (
            "netatopd_up",
            "Whether netatopd's control socket answered this scrape",
            up,
        ),
        (
            "netatopd_scrape_duration_seconds",
            "Time taken to ask netatopd for this scrape",
            start.elapsed().as_secs_f64(),
        ),
    ];
    let mut body = Vec::new();
    write_metrics(got.as_ref().ok(), format, true, &gauges, &mut body).expect("writing to memory");
    body
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}

/// Answers one request: `/metrics` (GET or HEAD), else 404 or 405.
fn answer(args: &Args, by: By, req: Request) {
    let path = req.url().split('?').next().unwrap_or("");
    let resp = match (req.method(), path) {
        (Method::Get | Method::Head, "/metrics") => {
            let accept = req
                .headers()
                .iter()
                .find(|h| h.field.equiv("Accept"))
                .map(|h| h.value.as_str().to_owned());
            let format = negotiate(accept.as_deref());
            let ct = match format {
                Format::Openmetrics => OPENMETRICS,
                Format::Prometheus => PROMETHEUS,
            };
            Response::from_data(scrape(args, by, format)).with_header(header("Content-Type", ct))
        }
        (Method::Get | Method::Head, _) => {
            Response::from_string("not found: the metrics are at /metrics\n").with_status_code(404)
        }
        _ => Response::from_string("only GET and HEAD\n")
            .with_status_code(405)
            .with_header(header("Allow", "GET, HEAD")),
    };
    // A scraper that went away meanwhile loses only its own answer.
    let _ = req.respond(resp);
}

pub fn run(args: &Args, o: &Opts) -> Result<()> {
    let server =
        Server::http(o.listen).map_err(|e| anyhow!("cannot listen on {}: {e}", o.listen))?;
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| anyhow!("no IP address to listen on"))?;
    // Scripts and tests wait for this line: the socket is bound.
    println!("netatopctl serve: listening on http://{addr}/metrics");
    for req in server.incoming_requests() {
        answer(args, o.by, req);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        // Prometheus 2.x's header.
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                    version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(prom)), Format::Openmetrics);
        assert_eq!(negotiate(None), Format::Prometheus);
        assert_eq!(negotiate(Some("*/*")), Format::Prometheus);
        assert_eq!(
            negotiate(Some("text/plain;version=0.0.4")),
            Format::Prometheus
        );
        assert_eq!(
            negotiate(Some("text/plain;q=0.9, application/openmetrics-text;q=0.5")),
            Format::Prometheus
        );
        assert_eq!(
            negotiate(Some("application/openmetrics-text; version=1.0.0")),
            Format::Openmetrics
        );
        assert_eq!(
            negotiate(Some("application/openmetrics-text;q=0")),
            Format::Prometheus
        );
    }
}
