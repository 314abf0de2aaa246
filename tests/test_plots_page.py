"""The offline plots page: specs made still-image friendly, and a headless-Chromium check that
every plot draws with no network request."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from facerec.plots_page import main, static_spec

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
IDENTITIES = [f"Person {letter}" for letter in "ABCDEFGHIJKL"]  # 12: more than fit in 300 px at 14 px
PLOTS = [  # the shapes of dvc.yaml's plots, on data this test writes
    {"Training curves (accuracy)": {"template": "linear", "x": "step",
                                    "y": {"live/train/accuracy.tsv": "accuracy", "live/eval/accuracy.tsv": "accuracy"}}},
    {"Confusion matrix (test)": {"template": "confusion", "x": "actual", "y": {"eval/confusion.csv": "predicted"}}},
    {"Per-identity F1 (test)": {"template": "bar_horizontal", "x": "f1", "y": {"eval/per_identity.csv": "identity"}}},
    "data/counts.png",
]
TITLES = ["Training curves (accuracy)", "Confusion matrix (test)", "Per-identity F1 (test)", "data/counts.png"]


def write_plot_data(repo: Path, shift: float) -> None:
    """Curves, predictions, F1 scores and a PNG; `shift` makes a second revision differ."""
    for split, offset in (("train", 0.1), ("eval", 0.0)):
        rows = [f"{step}\t{min(1.0, 0.1 * step + offset + shift):.3f}" for step in range(8)]
        (repo / "live" / split).mkdir(parents=True, exist_ok=True)
        (repo / "live" / split / "accuracy.tsv").write_text("step\taccuracy\n" + "\n".join(rows) + "\n")
    (repo / "eval").mkdir(exist_ok=True)
    pairs = [(name, IDENTITIES[(i + (k == 2)) % len(IDENTITIES)]) for i, name in enumerate(IDENTITIES) for k in range(3)]
    (repo / "eval" / "confusion.csv").write_text("actual,predicted\n" + "".join(f"{a},{p}\n" for a, p in pairs))
    scores = "".join(f"{name},{0.5 + 0.04 * i - shift:.2f}\n" for i, name in enumerate(IDENTITIES))
    (repo / "eval" / "per_identity.csv").write_text("identity,f1\n" + scores)
    (repo / "data").mkdir(exist_ok=True)
    Image.new("RGB", (60, 40), (int(200 * shift), 90, 160)).save(repo / "data" / "counts.png")


@pytest.fixture
def plots_repo(tmp_path) -> Path:
    """A git + DVC repository with one committed revision of the plots and a changed workspace."""
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}

    def run(*command):
        subprocess.run(command, cwd=repo, env=env, check=True, capture_output=True)

    run("git", "init", "-q")
    run(sys.executable, "-m", "dvc", "init", "-q")
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"plots": PLOTS}, sort_keys=False))
    write_plot_data(repo, shift=0.0)
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "first revision")
    write_plot_data(repo, shift=0.2)
    return repo


def test_static_spec_sizes_name_axes_and_starts_bars_at_zero():
    rows = [{"identity": f"id{i}", "f1": 0.9} for i in range(105)]
    spec = {"data": {"values": rows}, "mark": {"type": "bar"}, "height": 300,
            "encoding": {"x": {"field": "f1", "type": "quantitative", "scale": {"zero": False}},
                         "y": {"field": "identity", "type": "nominal"}}}
    still = static_spec(spec, step_px=14)
    assert still["height"] == 14 * 105, "105 names get 14 px each, not 3 px of a fixed 300 px view"
    assert still["encoding"]["x"]["scale"]["zero"] is True, "a bar's length is its value"
    assert spec["height"] == 300 and spec["encoding"]["x"]["scale"]["zero"] is False, "input left as it was"


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
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
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


# Per plot section: each inline SVG's size and drawn marks, each image's decoded size.
DRAWN_JS = """
return [...document.querySelectorAll('section[data-plot]')].map(section => ({
  title: section.dataset.plot,
  errors: section.querySelectorAll('.error').length,
  svgs: [...section.querySelectorAll('figure > svg')].map(svg => ({
    height: svg.getBoundingClientRect().height,
    marks: [...svg.querySelectorAll('.role-mark > *')].filter(mark => {
      const box = mark.getBBox(); return box.width > 0 || box.height > 0; }).length})),
  images: [...section.querySelectorAll('figure > img')].map(img => img.naturalWidth * img.naturalHeight),
}));
"""


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
def test_page_draws_every_plot_offline_in_chromium(plots_repo, tmp_path):
    page = tmp_path / "out" / "offline.html"
    main(["HEAD", "--repo", str(plots_repo), "--out", str(page)])  # dvc plots diff HEAD vs workspace
    text = page.read_text()
    assert "http://" not in text.replace('"http://www.w3.org/', "") and "https://" not in text, \
        "no external reference in the page (SVG namespace names are not requests)"
    assert len(list((tmp_path / "out" / "svg").glob("*.svg"))) == 3, "one static SVG per Vega-Lite plot"

    driver = browser(tmp_path / "chrome-profile")
    try:
        driver.get(page.as_uri())
        drawn = driver.execute_script(DRAWN_JS)
        driver.save_screenshot(str(tmp_path / "page.png"))
        events = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
    finally:
        driver.quit()

    assert [plot["title"] for plot in drawn] == TITLES, "one section per declared plot, in dvc.yaml order"
    for plot in drawn:
        assert plot["errors"] == 0, f"{plot['title']}: DVC loaded its data"
        if plot["title"].endswith(".png"):
            assert len(plot["images"]) == 2 and all(plot["images"]), f"{plot['title']}: both revisions decoded"
        else:
            assert len(plot["svgs"]) == 1 and plot["svgs"][0]["height"] > 100, f"{plot['title']}: one SVG on the page"
            assert plot["svgs"][0]["marks"] >= 2, f"{plot['title']}: marks with a visible size were drawn"
    requested = [event["params"]["request"]["url"] for event in events
                 if event["method"] == "Network.requestWillBeSent"]
    assert page.as_uri() in requested, "the performance log recorded the page load itself"
    remote = remote_requests(requested)
    assert not remote, f"the page and the browser sent no network request: {remote}"
