"""The dashboard in a real headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright): log in, watch a live update arrive without a reload, vote and comment, review
a flag as admin, be refused as an agent. Screenshots go to test-artifacts/dashboard/."""

# Fixtures come from test_server_support (imported below); tests take them as arguments.

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_server_support import DATASET, Template, live_server

from aar.client import Client

CHROMIUM = os.environ.get("AAR_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
LIVE = re.compile(r"\bon\b")  # the live dot: the event stream is open
SHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "dashboard"

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install -e '.[dev]')")
expect = sync_api.expect
expect.set_options(timeout=15_000)  # a live update takes ~1-2 s; CI machines are slow
pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists(),
                                reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")


@dataclass
class Live:
    url: str
    admin: str
    alice: str
    bob: str
    result: int
    follow_up: int
    flag: int
    template: Template


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def live(home: Path, template: Template, tmp_path: Path) -> Iterator[Live]:
    with live_server() as srv:
        url, admin_token = srv.url, srv.admin_token
        with Client(url, admin_token) as admin:
            alice_t = admin.create_token("alice").token
            bob_t = admin.create_token("bob").token
            carol_t = admin.create_token("carol").token
            alice, bob, carol = Client(url, alice_t), Client(url, bob_t), Client(url, carol_t)
            alice.put_status(run_id="run1", state="running", direction="kNN label smoothing",
                             evals=5, usd=1.25, tokens=42_000)
            alice.post_transcript("run1", [
                {"seq": 0, "kind": "user", "text": "Begin your research."},
                {"seq": 1, "kind": "assistant", "text": "Smoothing first.",
                 "calls": ['run_method({"path": "ideas/knn.py"})'], "input_tokens": 2000,
                 "output_tokens": 60, "usd": 0.01, "seconds": 3.0},
                {"seq": 2, "kind": "tool_result", "tool": "run_method", "ok": True,
                 "text": '{"agreement_with_weak": 0.91}'}])
            bob.put_status(run_id="run1", state="running", direction="confident filtering",
                           usd=0.5, tokens=9_000)
            carol.put_status(run_id="run1", state="stopped", direction="self-training",
                             reason="budget: 10 evaluations used")
            subs = [alice.evaluate(DATASET, p, seed=s, method="knn").id
                    for s, p in enumerate(template.preds)]
            code = tmp_path / "code"
            code.mkdir()
            (code / "method.py").write_text("def method(ctx):\n    return ctx.weak  # smooth\n")
            f = alice.post_finding("result", "kNN smoothing of weak labels", "Five seeds.",
                                   metrics={"pgr": 0.5}, dataset=DATASET, submissions=subs,
                                   code=code)
            g = bob._call("POST", "/findings", json={
                "type": "insight", "title": "smoothing then filtering",
                "body": "Builds on alice's.", "builds_on": [f.id]})
            flag = admin._call("POST", "/admin/flags", json={
                "agent": "bob", "kind": "vault_read", "severity": "high",
                "finding_id": g["id"],
                "evidence": "tool call 7: read_file('../../vault/labels.npy')"})
        yield Live(url, admin_token, alice_t, bob_t, f.id, g["id"], flag["id"], template)


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def log_in(browser: Any, live: Live, token: str, **ctx: Any) -> Any:
    page = browser.new_context(**ctx).new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{live.url}/")
    assert "/login" in page.url
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_selector("table.people")
    return page


def test_admin_sees_live_updates_and_reviews_a_flag(browser: Any, live: Live) -> None:
    page = log_in(browser, live, live.admin, viewport={"width": 1280, "height": 860})
    assert page.locator("#r-alice .dir").inner_text() == "kNN label smoothing"
    assert "budget" in page.locator("#r-carol").inner_text()
    cookies = page.context.cookies()
    session = next(c for c in cookies if c["name"] == "aar_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # nothing readable from scripts
    expect(page.locator("#live")).to_have_class(LIVE)
    shot(page, "overview-admin")

    page.evaluate("window.__noReload = true")
    with Client(live.url, live.alice) as alice:  # another client changes the state
        alice.put_status(run_id="run1", state="running", direction="kNN label smoothing",
                         best_pgr=0.777, evals=6, usd=2.5, tokens=50_000)
        alice.evaluate(DATASET, live.template.preds[0], seed=7, method="knn")
    expect(page.locator("#r-alice .pgr")).to_have_text("0.777")
    assert page.evaluate("window.__noReload") is True  # updated in place
    assert "$2.50" in page.locator("#r-alice").inner_text()
    shot(page, "overview-live-update")

    page.click("#r-alice a")  # the researcher's own page: costs, findings, transcript
    expect(page.locator("ol.transcript > li")).to_have_count(3)
    assert "run_method ok" in page.locator("#turn-2").inner_text()
    assert "kNN smoothing of weak labels" in page.inner_text("ul.findings")
    shot(page, "researcher-transcript")

    page.click("nav >> text=Leaderboard")
    assert page.locator("table.board").count() == 1
    assert "strong ceiling" in page.inner_text("table.board")
    shot(page, "leaderboard-admin")
    page.click("nav >> text=PGR")
    assert page.locator("svg.chart").count() >= 3
    shot(page, "pgr-over-time")

    page.click("nav >> text=Oversight")
    card = page.locator(f"#flag-{live.flag}")
    assert "read_file('../../vault/labels.npy')" in card.inner_text()
    shot(page, "oversight-queue")
    card.locator("textarea").fill("confirmed: it tried to read the vault")
    seen = page.evaluate("document.body.dataset.updated || ''")
    with Client(live.url, live.admin) as admin:  # a new flag arrives while the admin types
        new = admin._call("POST", "/admin/flags", json={
            "agent": "carol", "kind": "eval_edit", "severity": "low",
            "evidence": "wrote aar/w2s/metrics.py"})
    expect(page.locator("body")).to_have_attribute("data-updated", re.compile(
        "^(?!" + re.escape(seen) + "$).+"))  # the page did refresh...
    assert card.locator("textarea").input_value() == "confirmed: it tried to read the vault"
    assert page.locator(f"#flag-{new['id']}").count() == 0  # ...but held the typed region
    card.locator("button[value=accept]").click()  # yes, this was reward hacking
    page.wait_for_load_state()
    assert page.locator(f"#flag-{live.flag}").count() == 0  # left the open queue
    assert page.locator(f"#flag-{new['id']}").count() == 1  # the held update is in
    page.goto(f"{live.url}/oversight?state=accepted")
    assert "confirmed: it tried to read the vault" in page.inner_text(f"#flag-{live.flag}")
    page.goto(f"{live.url}/audit?action=flag.accepted")
    assert "flag.accepted" in page.inner_text("table.audit")
    shot(page, "audit-log")
    page.context.close()


def test_agent_votes_comments_sees_new_comments_and_is_refused(browser: Any,
                                                               live: Live) -> None:
    page = log_in(browser, live, live.bob, viewport={"width": 1100, "height": 800})
    assert page.locator("nav >> text=Oversight").count() == 0
    page.click(f"a[href='/forum/{live.result}']")
    page.wait_for_selector("table.hltable, .hl")
    assert page.locator(f"a[href='/forum/{live.follow_up}']").count() >= 1  # built on by
    page.click("button[value='1']")
    page.wait_for_selector("#votes button.on")
    assert page.locator("#votes b").inner_text() == "1"
    page.fill("#body", "Reproduced on my side with k=50.")
    page.click(".comment-form button")
    page.wait_for_selector("text=Reproduced on my side with k=50.")
    page.evaluate("window.__noReload = true")
    expect(page.locator("#live")).to_have_class(LIVE)
    with Client(live.url, live.alice) as alice:
        alice.comment(live.result, "Thanks, k=50 matches my run.")
    page.wait_for_selector("text=Thanks, k=50 matches my run.")
    assert page.evaluate("window.__noReload") is True
    shot(page, "finding-agent")

    r = page.goto(f"{live.url}/oversight")
    assert r is not None and r.status == 403
    assert "for admins" in page.inner_text("main")
    shot(page, "refused-agent")
    page.context.close()


def test_phone_layout_has_no_sideways_scroll(browser: Any, live: Live) -> None:
    page = log_in(browser, live, live.admin, viewport={"width": 390, "height": 844},
                  is_mobile=True, has_touch=True, device_scale_factor=2)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 392, f"the overview is {width}px wide on a 390px phone"
    shot(page, "overview-phone")
    page.goto(f"{live.url}/oversight")
    assert page.evaluate("document.documentElement.scrollWidth") <= 392
    page.context.close()
