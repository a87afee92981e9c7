"""``OUT/dashboard.html``: the class at a glance, one self-contained page for the instructor.

Written by ``autograde`` after every run, and again by ``python -m grading dashboard --out OUT``
from the stored results.  Sections: the score distribution per notebook and per question
(figures), the most common failure reasons per question with counts and who, students missing or
with errors, wrong notebooks, tampering flags, time per submission, and answer similarity across
students per answer cell (the most similar pairs side by side, with their scores).

Similarity compares *normalised tokens*: Python's tokenizer, comments and layout dropped, every
identifier that is not a keyword or builtin renamed to ``ID`` and every string to ``STR`` (so a
renamed copy scores like the original); written answers compare lower-cased words.  Candidates
are pre-selected by Jaccard similarity of token trigrams and ranked by
:class:`difflib.SequenceMatcher`; answers equal to the solution or left as the stub are not
compared (many correct answers look alike).  It is a pointer for a human, not a verdict.

Figures use the Okabe-Ito colour-blind-safe palette with hatching, titles, axis labels and alt
text; every student-written text is HTML-escaped, and the page loads nothing from elsewhere.
"""

from __future__ import annotations

import base64
import builtins
import difflib
import io
import json
import keyword
import re
import tokenize
from collections import Counter, defaultdict
from itertools import combinations
from pathlib import Path

from grading.model import Failure, Status, SubmissionResult
from grading.reporting.feedback import e
from grading.reporting.table import fmt

# Okabe & Ito (2008): distinguishable with every common colour-vision deficiency
BLUE, ORANGE, PURPLE, GREY, SKY = "#0072B2", "#E69F00", "#CC79A7", "#999999", "#56B4E9"
SIMILAR = 0.8  # SequenceMatcher ratio from which a pair is listed
TOP_PAIRS = 8  # pairs shown per answer cell
MIN_TOKENS = 12  # shorter answers are too alike by nature to compare
COMPARED_CHARS = 20_000  # answers are compared by their start: Python's tokenizer takes minutes (and GBs) on a 40 MB cell
SHOWN_CHARS = 4_000  # what a pair shows of each answer

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#1a1a1a;line-height:1.45}
h1{font-size:1.6rem} h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #ccc} h3{font-size:1.05rem}
table{border-collapse:collapse;margin:.6rem 0} td,th{border:1px solid #bbb;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f0f0f0} pre{background:#f6f8fa;border:1px solid #ddd;padding:.4rem;white-space:pre-wrap;font-size:.8rem;max-height:18rem;overflow:auto;margin:0}
.pair td{width:50%} .muted{color:#555} figure{margin:.8rem 0} figcaption{color:#444;font-size:.9rem}
nav a{margin-right:1rem}
"""


# ---------------------------------------------------------------------------------------------
# figures


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _figure(png: str, alt: str, caption: str) -> str:
    return (f'<figure><img src="data:image/png;base64,{png}" alt="{e(alt)}">'
            f"<figcaption>{e(caption)}</figcaption></figure>")


def _question_figure(title: str, questions: list[str], counts: list[tuple[int, ...]]) -> str:
    """Stacked horizontal bars per question: full marks / partial / zero / error or missing / awaiting a human."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 0.45 * len(questions) + 1.4))
    left = [0] * len(questions)
    kinds = [("full marks", BLUE, ""), ("partial", ORANGE, "//"), ("0 points", PURPLE, "xx"), ("error / missing", GREY, ".."),
             ("awaiting a human", SKY, "\\\\")]
    for k, (label, colour, hatch) in enumerate(kinds[: len(counts[0]) if counts else 4]):
        values = [c[k] for c in counts]
        ax.barh(questions, values, left=left, color=colour, hatch=hatch, edgecolor="white", label=label)
        left = [a + b for a, b in zip(left, values)]
    ax.invert_yaxis()
    ax.set_xlabel("students")
    ax.set_ylabel("question")
    ax.set_title(title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small", frameon=False)
    return _png(fig)


def _histogram(title: str, values: list[float], maximum: float, xlabel: str) -> str:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 2.8))
    top = max(maximum, max(values, default=0), 1)
    ax.hist(values, bins=min(20, max(5, int(top) + 1)), range=(0, top), color=SKY, edgecolor=BLUE)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("submissions")
    ax.set_title(title)
    return _png(fig)


# ---------------------------------------------------------------------------------------------
# similarity

_BUILTINS = set(dir(builtins)) | {"self", "torch", "nn", "F", "np", "math"}


def code_tokens(source: str) -> list[str]:
    """Normalised tokens of Python source (see the module docstring); words for non-Python text."""
    out = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                            tokenize.ENDMARKER):
                continue
            if tok.type == tokenize.NAME:
                out.append(tok.string if keyword.iskeyword(tok.string) or tok.string in _BUILTINS else "ID")
            elif tok.type == tokenize.STRING:
                out.append("STR")
            else:
                out.append(tok.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return word_tokens(source)
    return out


def word_tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


LONG_TOKENS = 400  # longer answers are compared by their shared 3-token shingles (linear time), not by difflib


def _shingles(tokens: list[str]) -> set[tuple[str, ...]]:
    return {tuple(tokens[i:i + 3]) for i in range(max(len(tokens) - 2, 1))}


def _shown(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}\n... ({len(text) - SHOWN_CHARS:,} more characters)"


def similar_pairs(answers: dict[str, str], code: bool, reference: str | None = None) -> list[tuple[float, str, str]]:
    """[(ratio, student a, student b)], most similar first, ratio >= SIMILAR."""
    tokenise = code_tokens if code else word_tokens
    ref = tokenise(reference[:COMPARED_CHARS]) if reference else None
    toks = {}
    for sid, text in answers.items():
        t = tokenise(text[:COMPARED_CHARS])
        if len(t) >= MIN_TOKENS and t != ref:
            toks[sid] = t
    shingles = {sid: _shingles(t) for sid, t in toks.items()}
    pairs = []
    for a, b in combinations(sorted(toks), 2):
        sa, sb = shingles[a], shingles[b]
        if len(sa & sb) / max(len(sa | sb), 1) < 0.5:
            continue
        if max(len(toks[a]), len(toks[b])) > LONG_TOKENS:  # SequenceMatcher can take minutes on long, repetitive text
            ratio = len(sa & sb) / max(len(sa | sb), 1)
        else:
            ratio = difflib.SequenceMatcher(None, toks[a], toks[b], autojunk=False).ratio()
        if ratio >= SIMILAR:
            pairs.append((ratio, a, b))
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    return pairs


# ---------------------------------------------------------------------------------------------
# the page


def _question_points(r: SubmissionResult, grade_id: str):
    return next((q for q in r.questions if q.grade_id == grade_id), None)


def _reason(q) -> str:
    text = q.hidden_error if q.hidden_error and not q.visible_error else (q.visible_error or q.reason or "")
    text = re.sub(r"\s+", " ", str(text)).strip()
    return text[:160] or "failed"


def _references() -> dict[tuple[str, str], dict[str, str]]:
    """The solutions' answers, to leave answers equal to them out of the similarity."""
    try:
        from grading import course
        from grading.tools.synthetic import solutions

        return {(nb.assignment, nb.name): solutions(nb) for nb in course.notebooks()}
    except Exception:  # noqa: BLE001 - no course here (a copied results folder): compare everything
        return {}


def render(results: list[SubmissionResult], absent: list[str] | None = None, notes: list[str] | None = None,
           ignored: list[str] | None = None, title: str = "Class dashboard") -> str:
    absent, notes, ignored = absent or [], notes or [], ignored or []
    by_nb: dict[tuple[str, str], list[SubmissionResult]] = defaultdict(list)
    for r in results:
        by_nb[(r.assignment, r.notebook)].append(r)
    students = sorted({r.student_id for r in results})
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{e(title)}</title>",
           f"<style>{STYLE}</style></head><body>", f"<h1>{e(title)}</h1>"]
    graded = [r for r in results if not r.error]
    took = [r.timings.get("total", 0.0) for r in results if r.timings.get("total")]
    out.append(f'<p>{len(students)} student(s), {len(results)} notebook result(s): {len(graded)} graded, '
               f'{sum(1 for r in results if r.error)} not graded (missing, wrong or unreadable), '
               f'{sum(1 for r in results if r.tampering)} with possible tampering'
               + (f"; {sum(took):.0f} s of grading in all" if took else "") + ".</p>")
    out.append('<nav><a href="#scores">Scores</a><a href="#failures">Failures</a><a href="#missing">Missing and errors</a>'
               '<a href="#tampering">Tampering</a><a href="#time">Time</a><a href="#similarity">Similarity</a></nav>')

    # scores
    out.append('<h2 id="scores">Score distribution</h2>')
    for (aid, nid), rs in sorted(by_nb.items()):
        out.append(f"<h3>{e(aid)} / {e(nid)}</h3>")
        auto_max = max((sum(q.max_score for q in r.questions if q.graded_by == "auto") for r in rs), default=0)
        totals = [sum(q.score or 0 for q in r.questions if q.graded_by == "auto") for r in rs]
        out.append(_figure(_histogram(f"{nid}: automatically graded score per student", totals, auto_max,
                                      f"score (of {fmt(auto_max)} points)"),
                           f"Histogram of the automatically graded scores of {nid}, {len(rs)} submissions, "
                           f"mean {fmt(sum(totals) / max(len(totals), 1))} of {fmt(auto_max)}",
                           "Automatically graded points per submission (written answers not included)."))
        order = [q.grade_id for q in max(rs, key=lambda r: len(r.questions)).questions]
        counts, rows = [], []
        for gid in order:
            full = part = zero = err = 0
            pending = 0
            for r in rs:
                q = _question_points(r, gid)
                if q is None or r.error or q.status is Status.ERROR:
                    err += 1
                elif q.status is Status.MANUAL:
                    pending += 1
                elif (q.score or 0) >= q.max_score:
                    full += 1
                elif (q.score or 0) > 0:
                    part += 1
                else:
                    zero += 1
            counts.append((full, part, zero, err, pending))
            q0 = next((_question_points(r, gid) for r in rs if _question_points(r, gid)), None)
            scored = [(_question_points(r, gid).score or 0) for r in rs if _question_points(r, gid) and _question_points(r, gid).status is not Status.MANUAL]
            mean = f"{round(sum(scored) / len(scored), 2):g}" if scored else "&ndash;"
            rows.append(f"<tr><td>{e(gid)}</td><td>{e(q0.title if q0 else '')}</td><td>{fmt(q0.max_score if q0 else 0)}</td>"
                        f"<td>{mean}</td><td>{full}</td><td>{part}</td><td>{zero}</td><td>{err}</td><td>{pending}</td></tr>")
        out.append(_figure(_question_figure(f"{nid}: result per question", order, counts),
                           f"Stacked bars per question of {nid}: students with full marks, partial credit, zero, and errors",
                           "Per question: full marks (blue), partial (orange, hatched), 0 points (reddish purple, crossed), "
                           "error or not handed in (grey, dotted), written answers awaiting a human (sky blue, back-hatched)."))
        out.append("<table><tr><th>question</th><th>title</th><th>points</th><th>mean</th><th>full</th><th>partial</th>"
                   "<th>0</th><th>error</th><th>awaiting a human</th></tr>" + "".join(rows) + "</table>")

    # failures
    out.append('<h2 id="failures">Most common failure reasons per question</h2>')
    any_failure = False
    for (aid, nid), rs in sorted(by_nb.items()):
        reasons: dict[str, Counter] = defaultdict(Counter)
        who: dict[tuple[str, str], list[str]] = defaultdict(list)
        for r in rs:
            if r.error:
                continue
            for q in r.questions:
                if q.status is Status.MANUAL or (q.status is Status.GRADED and (q.score or 0) >= q.max_score):
                    continue
                reason = _reason(q)
                reasons[q.grade_id][reason] += 1
                who[(q.grade_id, reason)].append(r.student_id)
        if not reasons:
            continue
        any_failure = True
        out.append(f"<h3>{e(aid)} / {e(nid)}</h3><table><tr><th>question</th><th>reason</th><th>students</th><th>who</th></tr>")
        for gid in sorted(reasons, key=lambda g: -sum(reasons[g].values())):
            for reason, n in reasons[gid].most_common(3):
                names = who[(gid, reason)]
                shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
                out.append(f"<tr><td>{e(gid)}</td><td>{e(reason)}</td><td>{n}</td><td>{e(shown)}</td></tr>")
        out.append("</table>")
    if not any_failure:
        out.append("<p>No question failed in a graded submission.</p>")

    # missing and errors
    out.append('<h2 id="missing">Students missing or with errors</h2>')
    problems = [r for r in results if r.error]
    if problems or absent:
        out.append("<table><tr><th>student</th><th>notebook</th><th>what</th><th>why</th></tr>")
        for r in sorted(problems, key=lambda r: (r.failure is not Failure.MISSING, r.student_id)):
            kind = str(r.failure) if r.failure else "error"
            out.append(f"<tr><td>{e(r.student_id)}</td><td>{e(r.assignment)}/{e(r.notebook)}</td><td>{e(kind)}</td><td>{e(r.error)}</td></tr>")
        for line in absent:  # "<student> has no <assignment>/<notebook>, which N other student(s) handed in"
            found = re.match(r"(\S+) has no (\S+?),", line)
            sid, notebook = found.groups() if found else (line.split(" ", 1)[0], "")
            out.append(f"<tr><td>{e(sid)}</td><td>{e(notebook)}</td><td>no submission</td><td>{e(line)}</td></tr>")
        out.append("</table>")
    else:
        out.append("<p>Every student handed in every notebook, and each could be read and run.</p>")
    errors = [(r, q) for r in results if not r.error for q in r.questions if q.status is Status.ERROR]
    if errors:
        out.append("<h3>Questions that could not be graded (crash, timeout)</h3><table><tr><th>student</th><th>question</th><th>why</th></tr>")
        out += [f"<tr><td>{e(r.student_id)}</td><td>{e(r.notebook)}/{e(q.grade_id)}</td><td>{e(q.reason)}</td></tr>" for r, q in errors]
        out.append("</table>")
    for line in notes:
        out.append(f"<p>Manual score cleared: {e(line)}</p>")
    if ignored:
        out.append("<details><summary>Files ignored by discovery</summary><ul>" + "".join(f"<li>{e(i)}</li>" for i in ignored) + "</ul></details>")

    # tampering
    out.append('<h2 id="tampering">Tampering flags</h2>')
    flagged = [r for r in results if r.tampering]
    if flagged:
        out.append("<table><tr><th>student</th><th>notebook</th><th>what the code does</th></tr>")
        for r in flagged:
            out.append(f"<tr><td>{e(r.student_id)}</td><td>{e(r.notebook)}</td><td><ul>"
                       + "".join(f"<li>{e(t)}</li>" for t in r.tampering) + "</ul></td></tr>")
        out.append("</table><p class=muted>Verdicts are computed outside the students' processes, so these did not change any score; they are worth a conversation.</p>")
    else:
        out.append("<p>No submission tried to patch the grader's view.</p>")

    # time
    out.append('<h2 id="time">Time per submission</h2>')
    if took:
        out.append(_figure(_histogram("Grading time per submission", took, max(took), "seconds"),
                           f"Histogram of grading time per submission: {len(took)} submissions, longest {max(took):.1f} s",
                           "Wall-clock seconds per submission (reading, start-up and running)."))
        slow = sorted((r for r in results if r.timings.get("total")), key=lambda r: -r.timings["total"])[:10]
        out.append("<table><tr><th>student</th><th>notebook</th><th>seconds</th><th>run</th><th>events</th></tr>")
        for r in slow:
            out.append(f"<tr><td>{e(r.student_id)}</td><td>{e(r.notebook)}</td><td>{r.timings['total']:.1f}</td>"
                       f"<td>{r.timings.get('run', 0):.1f}</td><td>{e('; '.join(r.events[:2]))}</td></tr>")
        out.append("</table>")
    else:
        out.append("<p>No timings recorded.</p>")

    # similarity
    out.append('<h2 id="similarity">Answer similarity across students</h2>')
    out.append(f"<p class=muted>Per answer cell, pairs of students whose answers have a normalised-token similarity of at least "
               f"{SIMILAR:.0%} (identifiers and strings renamed, comments and layout ignored); answers equal to the solution, "
               f"unchanged stubs and answers under {MIN_TOKENS} tokens are left out; a long answer is compared by its first "
               f"{COMPARED_CHARS:,} characters. A pointer for a human, not a verdict.</p>")
    refs = _references()
    shown_any = False
    for (aid, nid), rs in sorted(by_nb.items()):
        cells: dict[str, dict[str, str]] = defaultdict(dict)
        for r in rs:
            for gid, text in r.answers.items():
                if r.answered.get(gid, True) and text and text.strip():
                    cells[gid][r.student_id] = text
        for gid, answers in sorted(cells.items()):
            is_code = not any(q.graded_by == "manual" and q.grade_id == gid for r in rs for q in r.questions)
            pairs = similar_pairs(answers, is_code, refs.get((aid, nid), {}).get(gid))
            if not pairs:
                continue
            shown_any = True
            out.append(f"<h3>{e(nid)} / {e(gid)}: {len(pairs)} similar pair(s)</h3><table class=pair>")
            scores = {r.student_id: r for r in rs}
            for ratio, a, b in pairs[:TOP_PAIRS]:
                def score(sid, scores=scores, gid=gid):
                    r = scores[sid]
                    q = next((q for q in r.questions if q.grade_id == gid or q.answer == gid), None)
                    return "awaiting a human" if q is None or q.status is Status.MANUAL else f"{fmt(q.score or 0)}/{fmt(q.max_score)}"
                out.append(f"<tr><th>{e(a)} ({e(score(a))})</th><th>{e(b)} ({e(score(b))}) &mdash; similarity {ratio:.0%}</th></tr>"
                           f"<tr><td><pre>{e(_shown(answers[a]))}</pre></td><td><pre>{e(_shown(answers[b]))}</pre></td></tr>")
            out.append("</table>")
    if not shown_any:
        out.append("<p>No pair of answers is that similar.</p>")
    out.append("</body></html>")
    return "\n".join(out)


def write(path: Path, results: list[SubmissionResult], absent=None, notes=None, ignored=None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(results, absent, notes, ignored), encoding="utf-8")
    return path


def rebuild(out: Path, db=None) -> Path:
    """``python -m grading dashboard --out OUT [--db URL]``: the page again from OUT/results/, with the
    gradebook's human scores (Formgrader) merged in when ``db`` is given."""
    out = Path(out)
    folder = out / "results"
    if not folder.is_dir():
        raise FileNotFoundError(f"no graded results in {folder}: run `python -m grading autograde ... --out {out}` first")
    results = []
    for path in sorted(folder.rglob("*.json")):
        try:
            results.append(SubmissionResult.from_dict(json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, TypeError, KeyError):
            continue
    if db is not None:
        from grading.reporting.feedback import with_human_marks
        from grading.reporting.gradebook import check_gradebook, db_url_for, human_marks

        db_url = db_url_for(db)
        check_gradebook(db_url, allow_other_course=True, must_exist=True)
        scores, comments = human_marks(db_url)
        for r in results:
            with_human_marks(r, scores, comments)
    present = defaultdict(set)
    for r in results:
        present[(r.assignment, r.notebook)].add(r.student_id)
    students = sorted({r.student_id for r in results})
    absent = [f"{sid} has no {aid}/{nid}, which {len(who)} other student(s) handed in"
              for (aid, nid), who in sorted(present.items()) for sid in students if sid not in who]
    return write(out / "dashboard.html", results, absent=absent)
