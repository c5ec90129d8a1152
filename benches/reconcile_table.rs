//! `cargo bench --bench reconcile_table`: the Reconcile tab with 20,000 lines (issue 5 §7).
//!
//! The lines are real: a generated world of 1,000 customers (seed 42) is served by the
//! simulated world, fetched through the real clients and reconciled (about 2,150 lines with
//! every status, their money parts and explanations, and the mapping); that reconciliation is
//! repeated with distinct tenant ids and customer names until there are 20,000 lines, and fed
//! to the tab as a run's result.
//!
//! - Render: the time to draw the tab on a ratatui `TestBackend` at 120x40 and at 80x24 — the
//!   pane alone and the whole frame (tab bar, pane, footer, terminal diff) — flat and grouped
//!   by customer, every in-line line shown (`a`), moving a page down between frames so each
//!   frame has new rows.
//! - Sort: one `s` (each column in turn) and one `S` through the pure update, over the 20,000
//!   lines shown, flat and grouped.
//! - Filter: one keystroke of a query typed key by key, and a Backspace, flat and grouped.
//! - A result arriving (the keys computed once per result, then the rows): what each live
//!   update during a run costs.
//!
//! Targets: render ≤ 2 ms median, a sort or a filter keystroke ≤ 10 ms median. Timings are
//! printed, never asserted (DESIGN.md §6).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::KeyCode;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use cspsync::domain::{self, Options, Reconciliation, Status};
use cspsync::engine::fetch::{self, FetchProgress};
use cspsync::tui::app::{App, Effect, Msg, Setup, Tab};
use cspsync::tui::panes::reconcile::{self, Cmd, Sort};
use cspsync::tui::render;
use cspsync::tui::testing::{key, send};
use cspsync::tui::theme::Theme;

const LINES: usize = 20_000;
const ITERATIONS: usize = 60;
const QUERIES: [&str; 5] = [
    "premium",
    "underbilled",
    "bottlebrush",
    "cfq7ttc0lh18",
    "p1y",
];

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(what: &str, mut v: Vec<Duration>) {
    v.sort();
    let n = v.len();
    if n == 0 {
        return;
    }
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    };
    println!(
        "{what}: median {:.3} ms (min {:.3}, max {:.3}; {n} samples)",
        ms(median),
        ms(v[0]),
        ms(v[n - 1])
    );
}

/// A generated world of 1,000 customers, fetched through the sim and reconciled.
fn base() -> Reconciliation {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let today = chrono::Utc::now().date_naive();
        let mut w = cspsync::sim::generate::generate(&cspsync::sim::generate::GenOptions::new(
            1000, 42, today,
        ));
        w.app.device_code_interval_secs = 1;
        let sim = cspsync::sim::start(
            w.clone(),
            cspsync::sim::FaultSpec::default(),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let sources = cspsync::demo::connect(&sim, &w, cspsync::demo::PsaKind::ConnectWise)
            .await
            .unwrap();
        let (tx, _rx) = tokio::sync::watch::channel(FetchProgress::default());
        let snap = fetch::fetch(&sources, &tx).await.unwrap();
        let prices = cspsync::engine::pipeline::distributor_prices(&sources.dicker_data, &snap)
            .await
            .unwrap_or_default();
        domain::reconcile(
            &snap,
            &Options {
                prices,
                ..Options::default()
            },
        )
        .unwrap()
    })
}

const PLACES: [&str; 9] = [
    "North", "South", "East", "West", "Central", "Coastal", "Metro", "Regional", "Inland",
];

/// `base` repeated with distinct customers (tenant ids and names) up to `LINES` lines.
fn twenty_thousand(base: &Reconciliation) -> Reconciliation {
    let mut r = base.clone();
    r.lines.clear();
    r.mapping.customers.clear();
    let mut copy = 0usize;
    'fill: loop {
        let rename = |tenant: &str, name: &str| -> (String, String) {
            if copy == 0 {
                return (tenant.to_string(), name.to_string());
            }
            let t = format!("{copy:08x}{}", tenant.get(8..).unwrap_or(""));
            let n = format!("{name} {}", PLACES[(copy - 1) % PLACES.len()]);
            (t, n)
        };
        for c in &base.mapping.customers {
            let mut c = c.clone();
            (c.tenant_id, c.name) = rename(&c.tenant_id, &c.name);
            r.mapping.customers.push(c);
        }
        for l in &base.lines {
            if r.lines.len() == LINES {
                break 'fill;
            }
            let mut l = l.clone();
            (l.customer_tenant_id, l.customer_name) =
                rename(&l.customer_tenant_id, &l.customer_name);
            r.lines.push(l);
        }
        copy += 1;
    }
    r.lines.sort_by(|a, b| {
        (a.customer_name.to_lowercase(), &a.customer_tenant_id)
            .cmp(&(b.customer_name.to_lowercase(), &b.customer_tenant_id))
    });
    let s = &mut r.summary;
    s.lines_audited = r.lines.len();
    s.in_line = r.lines.iter().filter(|l| l.is_in_line()).count();
    s.mismatched = s.lines_audited - s.in_line;
    s.by_status = Status::ALL.iter().map(|x| (*x, 0)).collect();
    for l in &r.lines {
        for st in &l.statuses {
            *s.by_status.entry(*st).or_default() += 1;
        }
    }
    s.monthly_at_risk = r.lines.iter().map(|l| l.monthly_impact).sum();
    s.customers = r.mapping.customers.len();
    s.unmapped_customers = r
        .mapping
        .customers
        .iter()
        .filter(|c| c.psa.is_unmapped())
        .count();
    r
}

/// The app on the Reconcile tab after a run that returned `r`.
fn app_with(r: Arc<Reconciliation>) -> (App, Duration) {
    let mut app = App::new(Setup::default(), false);
    app.tab = Tab::Reconcile;
    let fx = send(&mut app, key(KeyCode::Enter));
    assert!(matches!(
        fx.as_slice(),
        [Effect::Reconcile(Cmd::Run { .. })]
    ));
    let generation = app.reconcile.generation;
    let t0 = Instant::now();
    send(
        &mut app,
        Msg::Reconcile(reconcile::Msg::Finished {
            generation,
            result: Ok(r),
            rotated: None,
            xero: None,
        }),
    );
    (app, t0.elapsed())
}

fn render_bench(app: &mut App, theme: &Theme, w: u16, h: u16, what: &str) {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    let _ = term.draw(|f| render::draw(app, theme, f));
    let mut pane = Vec::new();
    let mut frame = Vec::new();
    for i in 0..ITERATIONS * 2 {
        send(app, key(KeyCode::PageDown));
        if i % 2 == 0 {
            let t0 = Instant::now();
            term.draw(|f| {
                // The pane's area inside the frame (tab bar 2 rows, footer 2, margin 1).
                let area = f.area();
                let inner = ratatui::layout::Rect::new(
                    1,
                    2,
                    area.width.saturating_sub(2),
                    area.height.saturating_sub(4),
                );
                reconcile::render(&app.reconcile, &app.setup, theme, f, inner)
            })
            .unwrap();
            pane.push(t0.elapsed());
        } else {
            let t0 = Instant::now();
            term.draw(|f| render::draw(app, theme, f)).unwrap();
            frame.push(t0.elapsed());
        }
    }
    report(&format!("render {w}x{h} {what}, the pane"), pane);
    report(&format!("render {w}x{h} {what}, the whole frame"), frame);
}

fn sort_bench(app: &mut App, what: &str) {
    let mut by: Vec<(Sort, Vec<Duration>)> = Vec::new();
    let mut reverse = Vec::new();
    for _ in 0..ITERATIONS {
        for _ in 0..6 {
            let t0 = Instant::now();
            send(app, key(KeyCode::Char('s')));
            let d = t0.elapsed();
            let sort = app.reconcile.sort;
            match by.iter_mut().find(|(s, _)| *s == sort) {
                Some((_, v)) => v.push(d),
                None => by.push((sort, vec![d])),
            }
            let t0 = Instant::now();
            send(app, key(KeyCode::Char('S')));
            reverse.push(t0.elapsed());
        }
    }
    assert_eq!(app.reconcile.sort, Sort::Default);
    let mut all = Vec::new();
    for (sort, v) in by {
        all.extend(v.iter().copied());
        report(&format!("  s → {} ({what})", sort.label()), v);
    }
    report(&format!("sort, any column ({what})"), all);
    report(&format!("  S, reverse ({what})"), reverse);
}

fn filter_bench(app: &mut App, what: &str) {
    let mut keys = Vec::new();
    let mut back = Vec::new();
    let mut matched = Vec::new();
    let rounds = ITERATIONS.div_ceil(QUERIES.len() * 3) + 1;
    for round in 0..rounds {
        for q in QUERIES {
            send(app, key(KeyCode::Char('/')));
            assert!(app.reconcile.typing);
            for c in q.chars() {
                let t0 = Instant::now();
                send(app, key(KeyCode::Char(c)));
                keys.push(t0.elapsed());
            }
            if round == 0 {
                matched.push(format!("{q}: {}", app.reconcile.shown_lines().len()));
            }
            for _ in 0..3 {
                let t0 = Instant::now();
                send(app, key(KeyCode::Backspace));
                back.push(t0.elapsed());
            }
            send(app, key(KeyCode::Esc));
            assert!(!app.reconcile.typing);
        }
    }
    report(&format!("filter keystroke ({what})"), keys);
    report(&format!("  Backspace ({what})"), back);
    println!("  (lines matching: {})", matched.join(", "));
}

fn main() {
    let t0 = Instant::now();
    let base = base();
    println!(
        "reconcile_table: a generated world of 1,000 customers (seed 42) fetched and reconciled in {:.1} s: {} lines",
        t0.elapsed().as_secs_f64(),
        base.lines.len()
    );
    let r = Arc::new(twenty_thousand(&base));
    let customers = r
        .lines
        .iter()
        .map(|l| l.customer_tenant_id.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    println!(
        "{} lines of {customers} customers; {} with a mismatch",
        r.lines.len(),
        r.summary.mismatched
    );
    let theme = Theme::new(true);

    // A result arriving: keys computed, rows built (what each live update costs).
    let mut arrive = Vec::new();
    for _ in 0..20 {
        let (_, d) = app_with(r.clone());
        arrive.push(d);
    }
    report("a 20,000-line result arriving (keys + rows)", arrive);

    let (mut app, _) = app_with(r.clone());
    // Every line shown: the worst case for sorting and filtering.
    send(&mut app, key(KeyCode::Char('a')));
    assert_eq!(app.reconcile.view.len(), LINES);

    for (w, h) in [(120, 40), (80, 24)] {
        app.reconcile.grouped = false;
        app.reconcile.rebuild();
        render_bench(&mut app, &theme, w, h, "flat");
        send(&mut app, key(KeyCode::Char('g')));
        assert!(app.reconcile.grouped);
        render_bench(&mut app, &theme, w, h, "grouped");
    }
    // The detail pane open on a line.
    send(&mut app, key(KeyCode::Char('g')));
    send(&mut app, key(KeyCode::Home));
    send(&mut app, key(KeyCode::Enter));
    assert!(app.reconcile.detail.is_some());
    let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let mut detail = Vec::new();
    for _ in 0..ITERATIONS {
        send(&mut app, key(KeyCode::Down));
        let t0 = Instant::now();
        term.draw(|f| render::draw(&app, &theme, f)).unwrap();
        detail.push(t0.elapsed());
    }
    report(
        "render 120x40 with the detail open, the whole frame",
        detail,
    );
    send(&mut app, key(KeyCode::Esc));

    assert!(!app.reconcile.grouped);
    sort_bench(&mut app, "flat, 20,000 lines");
    filter_bench(&mut app, "flat, 20,000 lines");
    send(&mut app, key(KeyCode::Char('g')));
    sort_bench(&mut app, "grouped");
    filter_bench(&mut app, "grouped");
    // As the tab opens: mismatched lines only.
    send(&mut app, key(KeyCode::Char('g')));
    send(&mut app, key(KeyCode::Char('a')));
    println!(
        "as the tab opens ({} mismatched lines shown):",
        app.reconcile.view.len()
    );
    sort_bench(&mut app, "flat, mismatched only");
    filter_bench(&mut app, "flat, mismatched only");
}
