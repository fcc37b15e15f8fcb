#!/usr/bin/env python3
"""Browser tests of the case workers' web app, in a real headless Chromium.

    scripts/browser-tests [CASEMESH-BINARY] [--screenshots DIR]   (runs this file in .build/venv)

Two real `casemesh serve --http` nodes on loopback (a dong administrative welfare
centre holding 10,000 cases, and a senior welfare centre), real mutual TLS between
them, driven through Chromium by Selenium (Debian's chromium and chromium-driver,
Selenium from PyPI). A case worker takes a report from the intake queue; a
supervisor shares it; both nodes edit the case while cut off from each other; they
sync; the conflict shows on both, live, without a reload; a case worker cannot
resolve it (no button, and the API refuses); a supervisor resolves it and both
nodes show the decision; a note with markup shows as text. Page render times are
measured in the browser (navigation timing) and printed as JSON. Screenshots of
the main screens are saved (default docs/screenshots).
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
args = sys.argv[1:]
shots = os.path.join(ROOT, "docs", "screenshots")
if "--screenshots" in args:
    at = args.index("--screenshots")
    shots = args[at + 1]
    del args[at:at + 2]
BINARY = os.path.abspath(args[0] if args else os.path.join(ROOT, ".build", "debug", "casemesh"))
CA = os.path.join(ROOT, "certs", "casemesh-ca")
SEEDED = int(os.environ.get("BROWSER_TEST_CASES", "10000"))

failures = []
timings = {}


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        failures.append(what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*command, stdin=None):
    return subprocess.run(command, input=stdin, capture_output=True, text=True, check=True).stdout.strip()


class Node:
    def __init__(self, work, replica, peers):
        self.replica = replica
        self.data = os.path.join(work, replica.split("/")[0])
        self.sync_port = free_port()
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.cert, self.key = run(CA, "issue", os.path.join(work, "ca"), replica).splitlines()[:2]
        self.peers = peers
        self.process = None
        self.log = os.path.join(work, replica.split("/")[0] + ".log")
        run(BINARY, "init", "--replica", replica, "--data", self.data)

    def staff(self, username, role, name, password):
        run(BINARY, "staff", "add", username, "--role", role, "--name", name, "--data", self.data,
            stdin=password + "\n")

    def start(self):
        command = [BINARY, "serve", "--data", self.data, "--listen", f"127.0.0.1:{self.sync_port}",
                   "--http", f"127.0.0.1:{self.http_port}", "--cert", self.cert, "--key", self.key,
                   "--ca", os.path.join(WORK, "ca", "ca.pem"), "--crl", os.path.join(WORK, "ca", "crl.pem"),
                   "--interval", "3600", "--directory", os.path.join(WORK, "ca", "directory.json")]
        for peer in self.peers:
            command += ["--peer", f"{peer.replica}=127.0.0.1:{peer.sync_port}"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(self.log, "w"))
        for _ in range(150):
            try:
                urllib.request.urlopen(self.url + "/health/live", timeout=1)
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        raise SystemExit(f"{self.replica} did not start: " + open(self.log).read()[-2000:])

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()


def api(node, method, path, body=None, token=None, key=None):
    request = urllib.request.Request(node.url + path, method=method,
                                     data=None if body is None else json.dumps(body).encode())
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if token or key:
        request.add_header("Authorization", "Bearer " + (token or key))
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def browser():
    options = Options()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1366,768", "--lang=ko-KR", "--no-first-run", "--disable-extensions"):
        options.add_argument(flag)
    service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    return driver


def wait(driver, seconds=10):
    return WebDriverWait(driver, seconds, poll_frequency=0.1)


def login(driver, node, username, password):
    driver.get(node.url + "/login")
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, "header.top")))


def logout(driver):
    driver.find_element(By.CSS_SELECTOR, "form[action='/logout'] button").click()
    wait(driver).until(EC.presence_of_element_located((By.ID, "login")))


def render_ms(driver):
    """The last navigation's time from request to a parsed, loaded document."""
    return driver.execute_script(
        "const n = performance.getEntriesByType('navigation')[0];"
        "return n ? n.domContentLoadedEventEnd - n.requestStart : null;")


def timed(driver, name, url):
    samples = []
    for _ in range(5):
        driver.get(url)
        samples.append(render_ms(driver))
    samples.sort()
    timings[name] = {"median_ms": round(samples[len(samples) // 2], 1), "max_ms": round(samples[-1], 1)}


def shoot(driver, name):
    os.makedirs(shots, exist_ok=True)
    driver.save_screenshot(os.path.join(shots, name + ".png"))


def risk_text(driver):
    return driver.find_element(By.CSS_SELECTOR, "[data-field='riskLevel'] dd").text


def set_risk(driver, node, case, value):
    driver.get(f"{node.url}/cases/{case}")
    details = driver.find_element(By.CSS_SELECTOR, "#group-case details.edit")
    details.find_element(By.TAG_NAME, "summary").click()
    Select(driver.find_element(By.ID, "in-riskLevel")).select_by_value(value)
    driver.find_element(By.CSS_SELECTOR, "#edit-case button[type=submit]").click()
    wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".banner.flash")))


def sync_now(driver, node):
    driver.get(node.url + "/sync")
    driver.find_element(By.ID, "sync-now").click()
    wait(driver, 30).until(EC.presence_of_element_located((By.CSS_SELECTOR, "ul.results li")))
    return driver.find_element(By.CSS_SELECTOR, "ul.results").text


WORK = tempfile.mkdtemp(prefix="casemesh-browser-")
nodes = []
drivers = []
try:
    run(CA, "init", os.path.join(WORK, "ca"))
    senior = Node(WORK, "dongducheon.senior-welfare/server", [])
    dong = Node(WORK, "dongducheon.jungang-dong/server", [senior])
    senior.peers = [dong]
    nodes = [dong, senior]
    # The consortium directory, signed by the CA: screens name institutions by it.
    run(CA, "directory", os.path.join(WORK, "ca"), "--add", "dongducheon.jungang-dong", "--name", "중앙동 행정복지센터",
        "--kind", "dong-office", "--region", "동두천시", "--covers", "중앙동",
        "--node", f"{dong.replica}=127.0.0.1:{dong.sync_port}")
    run(CA, "directory", os.path.join(WORK, "ca"), "--add", "dongducheon.senior-welfare", "--name", "동두천시 노인복지관",
        "--kind", "senior-welfare-centre", "--region", "동두천시", "--node", f"{senior.replica}=127.0.0.1:{senior.sync_port}")
    dong.staff("lee", "caseworker", "이수진", "lee-password-1")
    dong.staff("kim", "admin", "김민지", "kim-password-1")
    senior.staff("park", "admin", "박정호", "park-password-1")
    started = time.monotonic()
    seeded = json.loads(run(BINARY, "bench", "seed", "--data", dong.data, "--cases", str(SEEDED)))
    print(f"seeded {seeded['cases']} cases on the dong centre's node in {seeded['seconds']:.1f} s", flush=True)
    intake_key = run(BINARY, "intake-key", "add", "kakao-channel", "--data", dong.data)
    for node in nodes:
        node.start()

    status, report = api(dong, "POST", "/api/v1/intake", key=intake_key, body={
        "messageId": "kakao-20261202-0001", "channel": "kakao",
        "summary": "이웃 제보: 3일째 전기 사용이 없고 우편물이 쌓여 있습니다. <script>alert('x')</script>",
        "title": "독거 어르신, 3일째 전력 사용 없음", "address": "동두천시 중앙로 12", "dong": "중앙동",
        "riskLevel": "high", "crisisSignals": ["no-power-use", "isolation"]})
    check(status == 201, "an intake channel's report opens a case (201)")
    case = report["case"]

    a = browser()
    drivers.append(a)
    driver = a
    driver.get(dong.url + "/cases")
    check("/login" in driver.current_url, "a page without login goes to the login page")
    login(driver, dong, "lee", "lee-password-1")
    check(driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "ko", "the app is in Korean")
    intake = driver.find_elements(By.CSS_SELECTOR, f".intake li[data-case='{case}']")
    check(len(intake) == 1, "the new report is at the top of 내 사례, in the intake queue")
    check(len(driver.find_elements(By.CSS_SELECTOR, "table.cases tbody tr")) == 50, "the case list shows a page of 50")
    shoot(driver, "case-list")
    intake[0].find_element(By.CSS_SELECTOR, "button").click()
    wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".banner.flash")))
    check("접수" in driver.find_element(By.CSS_SELECTOR, ".case-head .stage").text, "taking the report moves it to 접수")
    check("이수진" in driver.find_element(By.CSS_SELECTOR, ".case-head .meta").text, "the taker is its case manager")
    deadlines = driver.find_element(By.CSS_SELECTOR, "section.deadlines").text
    check("욕구사정" in deadlines and "진행 중" in deadlines, "taking the report starts the assessment deadline")
    # A stage move from the edit form, with its reason, is a stage event on the timeline.
    driver.find_element(By.CSS_SELECTOR, "#group-case details.edit summary").click()
    Select(driver.find_element(By.ID, "in-stage")).select_by_value("assessment")
    driver.find_element(By.ID, "stage-reason-case").send_keys("초기상담 완료")
    driver.find_element(By.CSS_SELECTOR, "#edit-case button[type=submit]").click()
    wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".banner.flash")))
    entry = driver.find_element(By.CSS_SELECTOR, ".entries li")
    check("접수 → 욕구사정" in entry.text and "초기상담 완료" in entry.text and "이수진 (lee)" in entry.text,
          "the stage move is on the timeline with who and why")
    summary = driver.find_element(By.CSS_SELECTOR, "[data-field='report.summary'] dd").text
    check("<script>" in summary, "markup in a report shows as text")
    check(not driver.execute_script("return window.__xss === true"), "no script from the report ran")

    # A note with markup, then a session that runs out mid-note: nothing typed is lost.
    note = driver.find_element(By.ID, "note")
    note.send_keys("가정방문: 어르신 안전 확인. <b>굵게</b> <img src=x onerror=alert(1)>")
    driver.find_element(By.CSS_SELECTOR, "#note-form button").click()
    wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".entries li")))
    first = driver.find_element(By.CSS_SELECTOR, ".entries li .text")
    check("<b>굵게</b>" in first.text and not first.find_elements(By.TAG_NAME, "b"),
          "a note with markup shows as text, not as markup")
    check("이수진 (lee)" in driver.find_element(By.CSS_SELECTOR, ".entries li .by").text
          and "중앙동 행정복지센터" in driver.find_element(By.CSS_SELECTOR, ".entries li .by").text,
          "the timeline shows who wrote the note: account and institution (named by the consortium directory)")
    driver.find_element(By.ID, "note").send_keys("퇴원 후 식사 지원 필요")
    time.sleep(0.3)
    driver.delete_cookie("casemesh_session")
    driver.find_element(By.CSS_SELECTOR, "#note-form button").click()
    wait(driver).until(EC.presence_of_element_located((By.ID, "login")))
    check("expired" in driver.current_url or "next=" in driver.current_url,
          "a form sent after the session ended goes to the login page")
    driver.find_element(By.ID, "username").send_keys("lee")
    driver.find_element(By.ID, "password").send_keys("lee-password-1")
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    wait(driver).until(EC.presence_of_element_located((By.ID, "note")))
    check(driver.find_element(By.ID, "note").get_attribute("value") == "퇴원 후 식사 지원 필요",
          "after logging in again the half-written note is back")
    driver.find_element(By.CSS_SELECTOR, "#note-form button").click()
    wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".banner.flash")))

    # A case worker cannot resolve conflicts: the API refuses them.
    status, body = api(dong, "POST", "/api/v1/session", body={"username": "lee", "password": "lee-password-1"})
    lee_token = body["token"]
    status, _ = api(dong, "POST", f"/api/v1/cases/{case}/resolve", token=lee_token,
                    body={"field": "riskLevel", "value": "crisis"})
    check(status == 403, "the API refuses a case worker's resolve (403)")
    logout(driver)

    # The supervisor shares the case with the senior welfare centre and syncs.
    login(driver, dong, "kim", "kim-password-1")
    driver.get(f"{dong.url}/cases/{case}/share")
    driver.find_element(By.ID, "institution").send_keys("dongducheon.senior-welfare")
    wont = driver.find_element(By.CSS_SELECTOR, "li[data-category-off='sensitive']")
    check(wont.is_displayed(), "the share summary says sensitive data will not be seen while it is not ticked")
    driver.find_element(By.ID, "k-sensitive").click()
    check(not wont.is_displayed() and driver.find_element(By.CSS_SELECTOR, "li[data-category='sensitive']").is_displayed(),
          "... and that it will be once ticked")
    driver.find_element(By.ID, "k-sensitive").click()
    shoot(driver, "share")
    driver.find_element(By.CSS_SELECTOR, "#share-form button[type=submit]").click()
    wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".banner.flash")))
    check("동두천시 노인복지관" in driver.find_element(By.CSS_SELECTOR, "#h-participants").find_element(
        By.XPATH, "..").text, "the senior welfare centre takes part after sharing, shown by its name")
    result = sync_now(driver, dong)
    check("동두천시 노인복지관" in result and "실패" not in result, "sync now reaches the peer")

    b = browser()
    drivers.append(b)
    login(b, senior, "park", "park-password-1")
    b.get(f"{senior.url}/cases/{case}")
    check("독거 어르신" in b.find_element(By.TAG_NAME, "h1").text, "the shared case is on the senior centre's node")
    b.get(senior.url + "/cases")
    check(b.find_element(By.CSS_SELECTOR, "p.total").text.endswith(": 1"),
          "the senior centre holds only the shared case, none of the 10,000 others")

    # Cut off from each other, both change the risk level.
    set_risk(driver, dong, case, "crisis")
    set_risk(b, senior, case, "medium")
    b.get(f"{senior.url}/cases/{case}")
    b.execute_script("window.__stillHere = true;")
    check(risk_text(b).startswith("보통"), "the senior centre shows its own value before the sync")

    # Back in touch: the dong centre syncs; the senior centre's open page follows live.
    sync_now(driver, dong)
    synced_at = time.monotonic()
    try:
        wait(b, 5).until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-field='riskLevel'].has-conflict"))
        live_seconds = time.monotonic() - synced_at
    except TimeoutException:
        live_seconds = None
    check(live_seconds is not None and live_seconds <= 2.0,
          f"the conflict arrives on the open page live within 2 s ({live_seconds and round(live_seconds, 2)} s)")
    check(b.execute_script("return window.__stillHere === true"), "... without a reload")
    check(bool(b.find_elements(By.CSS_SELECTOR, ".changed")), "... and what changed is marked")
    timings["live_update_s"] = live_seconds and round(live_seconds, 2)

    # Conflict review: both values, who wrote them; the supervisor decides.
    driver.get(f"{dong.url}/cases/{case}/conflicts")
    sides = driver.find_elements(By.CSS_SELECTOR, ".conflict .side")
    check(len(sides) == 2, "conflict review shows both values side by side")
    text = " ".join(side.text for side in sides)
    check("위기" in text and "보통" in text and "동두천시 노인복지관" in text and "중앙동 행정복지센터" in text
          and "dongducheon.senior-welfare/server" in text,
          "each value with the institution (by name) and node that wrote it")
    check(len(driver.find_elements(By.CSS_SELECTOR, ".side.provisional")) == 1, "the provisional value is marked")
    shoot(driver, "conflict-review")
    logout(driver)
    login(driver, dong, "lee", "lee-password-1")
    driver.get(f"{dong.url}/cases/{case}/conflicts")
    check(not driver.find_elements(By.CSS_SELECTOR, ".conflict button[type=submit]")
          and not driver.find_elements(By.CSS_SELECTOR, ".conflict input[type=radio]"),
          "a case worker sees no resolve button")
    logout(driver)
    login(driver, dong, "kim", "kim-password-1")
    driver.get(f"{dong.url}/cases/{case}/conflicts")
    for side in driver.find_elements(By.CSS_SELECTOR, ".conflict .side"):
        if "위기" in side.find_element(By.CSS_SELECTOR, ".value").text:
            side.find_element(By.CSS_SELECTOR, "input[type=radio]").click()
    driver.find_element(By.CSS_SELECTOR, ".conflict button[type=submit]").click()
    wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".banner.flash")))
    check(not driver.find_elements(By.CSS_SELECTOR, ".conflict .side"), "after the decision no conflict is open here")
    sync_now(driver, dong)
    shoot(driver, "sync-status")
    try:
        wait(b, 5).until(lambda d: not d.find_elements(By.CSS_SELECTOR, "[data-field='riskLevel'].has-conflict"))
    except TimeoutException:
        pass
    check(risk_text(b).startswith("위기"), "the senior centre shows the decision, live")
    driver.get(f"{dong.url}/cases/{case}")
    check(risk_text(driver).startswith("위기"), "the dong centre shows the decision")
    check(bool(driver.find_elements(By.CSS_SELECTOR, ".access table")), "the lead sees the case's access log")
    shoot(driver, "case-page")

    # A referral to the senior centre from the case page; only the senior centre can accept it.
    driver.find_element(By.CSS_SELECTOR, "#referrals details.edit summary").click()
    Select(driver.find_element(By.ID, "refer-to")).select_by_value("dongducheon.senior-welfare")
    driver.find_element(By.ID, "refer-service").send_keys("도시락 배달")
    driver.find_element(By.ID, "refer-need").send_keys("끼니 거름")
    driver.find_element(By.CSS_SELECTOR, "#refer-form button[type=submit]").click()
    wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".banner.flash")))
    row = driver.find_element(By.CSS_SELECTOR, "#referrals tr[data-referral]")
    check("동두천시 노인복지관" in row.text and "의뢰함" in row.text, "the referral is listed, requested")
    check("수락" not in " ".join(b.text for b in row.find_elements(By.CSS_SELECTOR, "button")),
          "the referring centre gets no accept button")
    sync_now(driver, dong)
    b.get(f"{senior.url}/cases/{case}")
    buttons = {button.text: button for button in b.find_elements(By.CSS_SELECTOR, "#referrals tr[data-referral] button")}
    check("수락" in buttons and "거절" in buttons, "the receiving centre can accept or decline")
    shoot(b, "referral")
    buttons["수락"].click()
    wait(b).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".banner.flash")))
    check("수락" in b.find_element(By.CSS_SELECTOR, "#referrals tr[data-referral]").text, "accepted at the senior centre")
    check(any("의뢰" in e.text and "수락" in e.text for e in b.find_elements(By.CSS_SELECTOR, ".entries li")),
          "the acceptance is on the timeline in words")
    sync_now(driver, dong)
    driver.get(f"{dong.url}/cases/{case}")
    check("수락" in driver.find_element(By.CSS_SELECTOR, "#referrals tr[data-referral]").text,
          "the dong centre sees it accepted after the sync")
    # 내 할 일: a task for lee, across cases.
    status, _ = api(dong, "POST", f"/api/v1/cases/{case}/tasks", token=lee_token,
                    body={"title": "퇴원 후 첫 안부 전화", "dueAt": "2026-12-10"})
    check(status == 201, "a task is added through the API")
    logout(driver)
    login(driver, dong, "lee", "lee-password-1")
    driver.get(dong.url + "/tasks")
    check("퇴원 후 첫 안부 전화" in driver.find_element(By.CSS_SELECTOR, "table.tasks").text,
          "the task is on lee's 내 할 일")
    shoot(driver, "tasks")
    logout(driver)
    login(driver, dong, "kim", "kim-password-1")
    driver.get(f"{dong.url}/cases/{case}")

    # A case conference approves the plan item; then the person's other case is linked.
    status, _ = api(dong, "POST", f"/api/v1/cases/{case}/changes", token=lee_token, body={"operations": [
        {"op": "assign", "field": "plan#meals.goal", "value": "끼니 거르지 않기"},
        {"op": "assign", "field": "person#p1.name", "value": "김 어르신"},
        {"op": "assign", "field": "person#p1.birthYear", "value": 1944},
        {"op": "assign", "field": "household.address", "value": "동두천시 중앙로 12"}]})
    check(status == 201, "a plan item and the person are recorded through the API")
    status, other = api(dong, "POST", "/api/v1/cases", token=lee_token, body={"fields": {
        "title": "같은 어르신, 129 신고", "person#p1.name": "김 어르신", "person#p1.birthYear": 1944,
        "household.address": "동두천시 중앙로 12"}})
    check(status == 201, "a second report about the same man opens another case")
    driver.get(f"{dong.url}/cases/{case}")
    driver.find_element(By.XPATH, "//summary[contains(., '사례회의 기록')]").click()
    driver.execute_script("document.getElementById('conference-at').value = '2026-12-03T10:00'")
    driver.find_element(By.ID, "conference-people").send_keys("이수진 (중앙동), 박정호 (노인복지관)")
    driver.find_element(By.ID, "conference-decisions").send_keys("도시락 배달 연계, 2주마다 모니터링")
    driver.find_element(By.ID, "pi-meals").click()
    driver.find_element(By.CSS_SELECTOR, "#conference-form button[type=submit]").click()
    wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".banner.flash")))
    plan_text = driver.find_element(By.ID, "group-plan-meals").text
    check("승인한 사례회의" in plan_text, "the approved plan item names its conference")
    check(any("도시락 배달 연계" in e.text for e in driver.find_elements(By.CSS_SELECTOR, ".entries li")),
          "the conference's decision is on the timeline")
    driver.find_element(By.XPATH, "//a[contains(., '같은 사람의 다른 사례 찾기')]").click()
    row = wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, f"tr[data-case='{other['case']}']")))
    check("이름·출생연도·주소" in row.text, "the other case is found by name, birth year and address")
    shoot(driver, "matches")
    row.find_element(By.CSS_SELECTOR, "button").click()
    wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".banner.flash")))
    check("같은 어르신, 129 신고" in driver.find_element(By.TAG_NAME, "main").text
          and "연결 해제" in driver.find_element(By.CSS_SELECTOR, f"tr[data-case='{other['case']}']").text,
          "linked, and the link can be undone")
    driver.get(f"{dong.url}/cases/{case}")

    # English on a switch; Korean dates.
    check(any(c.isdigit() for c in driver.find_element(By.CSS_SELECTOR, ".entries time").text)
          and "(" in driver.find_element(By.CSS_SELECTOR, ".entries time").text, "times read 2026. 12. 2. (수) 14:05")
    driver.find_element(By.CSS_SELECTOR, "a.lang").click()
    wait(driver).until(lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en")
    check("Timeline" in driver.page_source, "the English switch shows the page in English")
    driver.find_element(By.CSS_SELECTOR, "a.lang").click()

    # Safe by default: headers of a page with personal data.
    request = urllib.request.Request(f"{dong.url}/cases/{case}", headers={"Cookie": "casemesh_session=" + lee_token})
    with urllib.request.urlopen(request) as response:
        headers = response.headers
    check(headers.get("Cache-Control") == "no-store", "pages with personal data are not cached")
    check("script-src 'self'" in headers.get("Content-Security-Policy", "")
          and "unsafe-inline" not in headers.get("Content-Security-Policy", ""), "CSP without inline scripts")
    forged = urllib.request.Request(f"{dong.url}/cases/{case}/note", method="POST",
                                    data=b"text=forged&csrf=0000", headers={
                                        "Cookie": "casemesh_session=" + lee_token,
                                        "Content-Type": "application/x-www-form-urlencoded"})
    try:
        urllib.request.urlopen(forged)
        forged_status = 200
    except urllib.error.HTTPError as error:
        forged_status = error.code
    check(forged_status == 403, "a form without its CSRF token is refused (403)")

    # Render times on the node holding 10,000 cases.
    timed(driver, "case_list", dong.url + "/cases")
    timed(driver, "case_page", f"{dong.url}/cases/{case}")
    timed(driver, "conflict_review", dong.url + "/conflicts")
    timed(driver, "sync_status", dong.url + "/sync")
    timed(driver, "my_tasks", dong.url + "/tasks")
    slowest = max(value["median_ms"] for value in timings.values() if isinstance(value, dict))
    # The target (200 ms) is for the release build a node runs; an unoptimised debug
    # build (what CI tests) renders the same pages about three times slower.
    release = os.sep + "release" + os.sep in BINARY
    budget = 200 if release else 600
    timings["build"] = "release" if release else "debug"
    check(slowest < budget,
          f"every page renders in under {budget} ms ({timings['build']} build) on a node with {SEEDED} cases "
          f"(slowest median {slowest} ms)")
    timings["cases_on_node"] = SEEDED
    timings["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps({"browser_test_timings": timings}), flush=True)
finally:
    for driver in drivers:
        try:
            driver.quit()
        except Exception:
            pass
    for node in nodes:
        node.stop()
    logs = [open(node.log).read() for node in nodes if os.path.exists(node.log)]
    for node, log in zip(nodes, logs):
        if " error " in log or '"level":"error"' in log:
            failures.append(f"{node.replica} logged an error")
            print(log[-3000:])
    shutil.rmtree(WORK, ignore_errors=True)

if failures:
    print(f"{len(failures)} browser check(s) failed", flush=True)
    sys.exit(1)
print("browser tests passed", flush=True)
