"""`dvc plots show`/`diff` pages: the project's HTML template carries Vega inline, and a headless
Chromium draws every plot dvc.yaml declares with no request leaving the machine."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from conftest import PROJECT_ROOT
from facerec.plots_template import inline_script, page_template

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
# What the template stage needs in a scratch project (dvc.yaml, its deps and DVC's plot settings).
PROJECT_FILES = ["dvc.yaml", "requirements.txt", "facerec", "stages", ".dvc/config", ".dvc/plots"]
IDENTITIES = [f"Person {letter}" for letter in "ABCDEFGHIJKL"]


def test_template_has_dvc_placeholders_and_no_remote_script():
    template = page_template()
    assert "{plot_divs}" in template and "{refresh_tag}" in template, "DVC fills the plots and the refresh tag"
    assert "{scripts}" not in template, "DVC's CDN <script> tags have no place to go"
    assert not re.search(r"<script[^>]*\bsrc=", template), "every script is inline: nothing to fetch"
    assert "connect-src 'none'" in template, "the page's policy forbids any request from script"


def test_inline_script_refuses_code_that_would_close_the_element():
    with pytest.raises(ValueError, match="</script"):
        inline_script('const page = "</script><script>alert(1)";')


def plot_entries() -> tuple[dict[str, dict], list[str]]:
    """dvc.yaml's plots: {title: definition} of the Vega plots, and the image paths."""
    declared = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["plots"]
    vega = {title: spec for entry in declared if isinstance(entry, dict) for title, spec in entry.items()}
    return vega, [entry for entry in declared if isinstance(entry, str)]


def write_plot_data(repo: Path, shift: float) -> None:
    """Every file dvc.yaml's plots read, with rows of the declared x/y fields; `shift` makes a revision differ."""
    vega, images = plot_entries()
    for spec in vega.values():
        for path, y_field in spec["y"].items():
            target = repo / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if y_field == "learning_rate":  # Adamax's 1e-3, unchanged over a short run
                rows = [f"{step}\t0.001" for step in range(3)]
                target.write_text(f"step\t{y_field}\n" + "\n".join(rows) + "\n", encoding="utf-8")
            elif spec["x"] == "step":  # per-epoch curves, three epochs as on a short run
                rows = [f"{step}\t{0.1 * step + 0.3 + shift:.6f}" for step in range(3)]
                target.write_text(f"step\t{y_field}\n" + "\n".join(rows) + "\n", encoding="utf-8")
            elif spec["template"] == "confusion":
                pairs = [(name, IDENTITIES[(number + (shift > 0)) % len(IDENTITIES)])
                         for number, name in enumerate(IDENTITIES)]
                target.write_text(f"{spec['x']},{y_field}\n" + "".join(f"{a},{p}\n" for a, p in pairs),
                                  encoding="utf-8")
            else:  # one bar per identity
                target.write_text(f"{y_field},{spec['x']}\n" + "".join(
                    f"{name},{0.5 + 0.04 * number - shift:.2f}\n" for number, name in enumerate(IDENTITIES)),
                    encoding="utf-8")
    for path in images:
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (60, 40), (int(200 * shift), 90, 160)).save(repo / path)


def run(repo: Path, *command: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture
def plots_repo(tmp_path) -> Path:
    """The project's plot set-up (dvc.yaml, templates, .dvc/config) after `dvc repro plots_template`,
    with one committed revision of every plot's data and a changed workspace."""
    repo = tmp_path / "repo"
    repo.mkdir()
    run(repo, "git", "init", "-q")
    run(repo, sys.executable, "-m", "dvc", "init", "-q")
    for name in PROJECT_FILES:
        source, target = PROJECT_ROOT / name, repo / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    run(repo, sys.executable, "-m", "dvc", "repro", "plots_template")
    write_plot_data(repo, shift=0.0)
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "first revision")
    write_plot_data(repo, shift=0.2)
    return repo


def browser(user_data_dir: Path):
    """Headless Debian Chromium with no background traffic, logging every network event."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={user_data_dir}",
                 # No new-tab page: its chrome-untrusted:// frames would load before ours.
                 "--homepage=about:blank", "--no-default-browser-check",
                 "--disable-features=NtpOneGoogleBar,NtpRealboxSuggestions,ChromeWhatsNewUI"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    # An explicit driver path: Selenium Manager would otherwise try to download a driver.
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def remote_requests(urls: list[str]) -> list[str]:
    """The URLs that would leave the machine; chrome://, chrome-untrusted://, data: and file: are
    served from inside the browser or from disk."""
    return [url for url in urls if url.split(":", 1)[0].lower() in {"http", "https", "ws", "wss"}]


def test_remote_requests_are_the_schemes_that_leave_the_machine():
    urls = ["file:///tmp/page.html", "data:,", "chrome://newtab/", "HTTPS://cdn.example/vega.js",
            "chrome-untrusted://new-tab-page/one-google-bar?paramsencoded=", "ws://localhost:1/"]
    assert remote_requests(urls) == ["HTTPS://cdn.example/vega.js", "ws://localhost:1/"], \
        "the browser's own new-tab page is not a network request; http(s) and ws(s) to any host are"


# Per Vega plot (DVC's <div id=...> that vegaEmbed fills): its title (the last title text Vega
# draws; facet headers come before it), its axis labels ("X"/"Y" from each axis' aria-label) and
# the marks drawn with a visible size; per image: its decoded size.
DRAWN_JS = """
const axisLabels = (div, letter) => [...div.querySelectorAll('g.role-axis')]
  .filter(axis => (axis.getAttribute('aria-label') || '').startsWith(letter + '-axis'))
  .flatMap(axis => [...axis.querySelectorAll('.role-axis-label text')].map(text => text.textContent));
const plots = [...document.querySelectorAll('div.vega-embed')].map(div => ({
  title: [...div.querySelectorAll('.role-title-text')].map(text => text.textContent).pop(),
  x: axisLabels(div, 'X'), y: axisLabels(div, 'Y'),
  marks: [...div.querySelectorAll('svg .role-mark > *')].filter(mark => {
    const box = mark.getBBox(); return box.width > 0 || box.height > 0; }).length}));
const images = [...document.querySelectorAll('img')].map(img => img.naturalWidth * img.naturalHeight);
return {plots, images};
"""


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
def test_dvc_plots_diff_page_draws_every_plot_offline_in_chromium(plots_repo, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    run(plots_repo, sys.executable, "-m", "dvc", "plots", "diff", "HEAD")  # HEAD vs the workspace
    page = plots_repo / "dvc_plots" / "index.html"
    text = page.read_text(encoding="utf-8")
    assert "cdn.jsdelivr" not in text and not re.search(r"<script[^>]*\bsrc=", text), \
        "DVC's page took the project's template: no script is loaded from anywhere"
    vega, images = plot_entries()

    driver = browser(tmp_path / "chrome-profile")
    try:
        driver.get(page.as_uri())
        # Vega draws asynchronously: wait (not a timing assertion) until every plot has its SVG.
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(
            "return document.querySelectorAll('div.vega-embed svg.marks').length") >= len(vega),
            message="Vega drew no SVG for some plots (scripts that must come from a CDN draw nothing offline)")
        drawn = driver.execute_script(DRAWN_JS)
        driver.save_screenshot(str(tmp_path / "page.png"))
        events = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
        console = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    finally:
        driver.quit()

    assert not console, f"the page ran without script errors: {console}"
    assert [plot["title"] for plot in drawn["plots"]] == list(vega), "one drawn plot per dvc.yaml entry, in order"
    for plot in drawn["plots"]:
        assert plot["marks"] >= 2, f"{plot['title']}: marks with a visible size were drawn"
        if vega[plot["title"]]["x"] == "step":
            assert plot["x"] and all(label.isdigit() for label in plot["x"]) and \
                len(set(plot["x"])) == len(plot["x"]), f"{plot['title']}: one tick per whole epoch: {plot['x']}"
    rate_labels = next(plot["y"] for plot in drawn["plots"] if plot["title"] == "Learning rate")
    assert rate_labels and all(float(label) > 0 for label in rate_labels), \
        f"the learning rate axis is labelled with its values (1e-3), not rounded to 0: {rate_labels}"
    assert len(drawn["images"]) == 2 * len(images) and all(drawn["images"]), \
        "every image plot decoded for both revisions"
    requested = [event["params"]["request"]["url"] for event in events
                 if event["method"] == "Network.requestWillBeSent"]
    assert page.as_uri() in requested, "the performance log recorded the page load itself"
    remote = remote_requests(requested)
    assert not remote, f"the page and the browser sent no network request: {remote}"
