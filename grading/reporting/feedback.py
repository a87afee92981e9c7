"""Per-student feedback: one self-contained HTML page per submitted notebook.

It shows each question with its score, the student's answer as graded, the visible checks (their
code and output, tracebacks included) and, for the hidden tests, only whether they passed and the
exception type and message of a failure.  The hidden tests' source and tracebacks never appear:
they are not even in the data this module receives for hidden parts (see
:class:`grading.autograde.QuestionResult`), and every text is HTML-escaped.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import nbformat
from nbconvert.preprocessors import Preprocessor

from grading.intake.template import Template, load_template
from grading.model import AFTER_HIDDEN, Status

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1a1a1a;line-height:1.45}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.meta{color:#555} .total{font-size:1.2rem;margin:.6rem 0}
table{border-collapse:collapse;margin:.8rem 0} td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}
pre{background:#f6f8fa;border:1px solid #e1e4e8;padding:.6rem;overflow-x:auto;white-space:pre-wrap;font-size:.85rem}
.ok{color:#116329;font-weight:600} .bad{color:#a40e26;font-weight:600} .wait{color:#7d4e00;font-weight:600}
.box{border-left:4px solid #a40e26;background:#fff5f5;padding:.5rem .8rem;margin:.8rem 0}
.note{border-left:4px solid #0969da;background:#f3f8ff;padding:.5rem .8rem;margin:.8rem 0}
details{margin:.4rem 0} summary{cursor:pointer;color:#0969da}
"""


def e(text) -> str:
    return html.escape(str(text if text is not None else ""), quote=True)


HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
HIDDEN_NOTE = "# (hidden tests: run by the grader, not shown here; see solutions/)"


def strip_hidden(source: str) -> str:
    """``source`` with every hidden-test region replaced by one comment line."""
    kept, inside = [], False
    for line in source.splitlines():
        if HIDDEN_BEGIN in line:
            inside = True
            kept.append(line[: len(line) - len(line.lstrip())] + HIDDEN_NOTE)
        elif HIDDEN_END in line:
            inside = False
        elif not inside:
            kept.append(line)
    return "\n".join(kept)


class ClearAfterHidden(Preprocessor):
    """For nbgrader's Generate Feedback: the outputs of student code that ran after a hidden check had called it
    (the engine marks those cells) are replaced by a note, as in this kit's own feedback pages: that code may
    have kept the hidden inputs and printed, drawn or raised them."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and cell.get("metadata", {}).get(AFTER_HIDDEN):
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=WITHHELD_OUTPUT)]
        elif cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", []) if not o.get("metadata", {}).get(AFTER_HIDDEN)]
        return cell, resources


WITHHELD_OUTPUT = "(output not shown in feedback: this code ran after a hidden check had called it)\n"


def text_block(text: str) -> str:
    """Markdown that shows ``text`` as it is, a fenced block with its backticks made look-alikes: no link,
    image, HTML or LaTeX ``\\href`` in it can act (Markdown's own ``[x](javascript:...)`` survives HTML
    escaping)."""
    return "```text\n" + str(text).replace("`", "\u02cb") + "\n```"


def inert_notebook(executed: str) -> str:
    """The executed notebook for nbgrader's formgrader, with everything a student wrote made inert.

    Formgrader renders notebooks on the Jupyter origin, where a student's ``<script>`` or
    ``<img onerror=...>`` in a markdown answer would run as the instructor.  Every markdown cell's
    HTML is escaped (Markdown itself still renders), attachments are dropped, and only stream,
    error and PNG/plain-text outputs are kept.  Hidden tests' source is removed, so
    nbgrader's own Generate Feedback, which renders these notebooks for students, cannot leak them.
    """
    nb = nbformat.reads(executed, as_version=4)
    for cell in nb.cells:
        cell.pop("attachments", None)
        if cell.cell_type == "code" and HIDDEN_BEGIN in cell.source:
            cell.source = strip_hidden(cell.source)  # (the engine never puts a hidden check's error in outputs)
        if cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = text_block(cell.source)  # a student's written answer: shown as plain text
        elif cell.cell_type == "markdown":
            cell.source = re.sub(r"[<>]", lambda m: {"<": "&lt;", ">": "&gt;"}[m.group()], cell.source)
        elif cell.cell_type == "code":
            kept = []
            for out in cell.get("outputs", []):
                if out.get("output_type") in ("stream", "error"):
                    kept.append(out)
                elif out.get("output_type") in ("display_data", "execute_result"):
                    data = {k: v for k, v in out.get("data", {}).items() if k in ("image/png", "text/plain")}
                    if data:
                        out["data"] = data
                        out["metadata"] = {}
                        kept.append(out)
            cell.outputs = kept
        elif cell.cell_type == "raw":
            cell.cell_type = "markdown"
            cell.source = e(cell.source)
    return nbformat.writes(nb)


def _num(x) -> str:
    return "" if x is None else f"{float(x):g}"


def _property_row(p) -> str:
    counted = p.passed and not p.reason
    result = ('<span class="ok">passed</span>' + (f" ({e(p.reason)})" if p.reason else "")) if p.passed \
        else f'<span class="bad">failed</span>: {e(p.reason)}'
    where = " (after hand-in)" if p.hidden else ""
    return (f"<tr><td>{e(p.name)}{where}</td><td>{_num(round(p.points, 2) if counted else 0)} / {_num(round(p.points, 2))}</td>"
            f"<td>{result}</td></tr>")


def _status(q) -> str:
    if q.status == "manual":
        return '<span class="wait">to be graded by your instructor</span>'
    if q.graded_by == "manual" and q.score is not None and q.reason != "no response (the answer is the unchanged stub)":
        return '<span class="ok">graded by your instructor</span>'
    if q.status == "error":
        return '<span class="bad">not graded</span>'
    if q.score is not None and q.score >= q.max_score:
        return '<span class="ok">passed</span>'
    return '<span class="bad">failed</span>'


def render(result, template: Template | None = None, comments: dict[str, str] | None = None,
           by_hand: set[str] | frozenset = frozenset()) -> str:
    """The feedback page of one :class:`~grading.model.SubmissionResult`.

    ``comments``: the instructor's comments by cell name (answer or question grade_id);
    ``by_hand``: questions whose score a human set.
    """
    comments = comments or {}
    visible_code = {}
    if template is not None:
        for part in template.questions:
            code = "".join(s.source for s in part.segments if not s.hidden)
            if code.strip():
                visible_code[part.grade_id] = code.strip("\n")
    auto = [q for q in result.questions if q.graded_by == "auto"]
    figures, withheld = _figures(result, template)
    manual = [q for q in result.questions if q.graded_by == "manual"]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Feedback: {e(result.notebook)} ({e(result.student_id)})</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Feedback: {e(result.notebook)}</h1>",
        f'<p class="meta">Student <b>{e(result.student_id)}</b> &middot; assignment <b>{e(result.assignment)}</b>'
        f" &middot; file <code>{e(Path(result.submission).name if result.submission else 'not handed in')}</code></p>",
    ]
    auto_score = sum(q.score or 0 for q in auto)
    auto_max = sum(q.max_score for q in auto)
    pending = [q for q in manual if q.status == "manual"]
    total = f"Automatically graded: <b>{_num(auto_score)} / {_num(auto_max)}</b> points"
    if manual:
        done = sum(q.score or 0 for q in manual if q.status != "manual")
        total += f"; written answers: {_num(done)} so far"
        if pending:
            total += f", {_num(sum(q.max_score for q in pending))} point(s) to be graded by your instructor"
    out.append(f'<p class="total">{total}.</p>')
    if result.error:
        out.append(f'<div class="box"><b>Your file could not be graded automatically.</b> {e(result.error)}. '
                   "Every question is marked as not graded; your instructor has been told.</div>")
    for event in result.events:
        out.append(f'<div class="box">{e(event)}.</div>')
    if result.neutralised:
        items = "".join(f"<li>{e(n)}</li>" for n in result.neutralised)
        out.append(f'<div class="note">Made harmless while grading (your points are not affected):<ul>{items}</ul></div>')
    if result.repairs or result.format:
        items = "".join(f"<li>{e(r)}</li>" for r in result.repairs)
        out.append(
            f'<div class="note">How your file was read: {e(result.format or "unknown format")}.'
            + (f"<ul>{items}</ul>" if items else " Nothing needed repair.")
            + "</div>"
        )
    out.append("<table><tr><th>Question</th><th>Score</th><th>Result</th></tr>")
    for q in result.questions:
        score = "&ndash;" if q.score is None else _num(q.score)
        out.append(f'<tr><td><a href="#{e(q.grade_id)}">{e(q.title or q.grade_id)}</a></td>'
                   f"<td>{score} / {_num(q.max_score)}</td><td>{_status(q)}</td></tr>")
    out.append("</table>")
    for q in result.questions:
        score = "&ndash;" if q.score is None else _num(q.score)
        out.append(f'<h2 id="{e(q.grade_id)}">{e(q.title or q.grade_id)}: {score} / {_num(q.max_score)} &nbsp;{_status(q)}</h2>')
        if q.grade_id in by_hand:
            out.append("<p>Scored by your instructor.</p>")
        for name in dict.fromkeys(n for n in (q.grade_id, q.answer) if n):
            if comments.get(name):
                out.append(f'<div class="note"><b>Your instructor\'s comment:</b><pre>{e(comments[name])}</pre></div>')
        if q.properties:
            rows = "".join(_property_row(p) for p in q.properties)
            out.append(f"<table><tr><th>Property</th><th>Points</th><th>Result</th></tr>{rows}</table>")
        if q.answer and q.answer in result.answers and q.graded_by == "auto":
            out.append(f"<p>Checks your answer <code>{e(q.answer)}</code>.</p>")
        if q.graded_by == "manual":
            answer = result.answers.get(q.grade_id, "")
            out.append(f"<p>{e(q.reason)}.</p>")
            out.append(f"<details open><summary>Your answer</summary><pre>{e(answer)}</pre></details>")
            continue
        if q.status == "error" and q.reason:
            out.append(f'<div class="box">{e(q.reason)}.</div>')
        if q.answer_error:
            out.append(f'<div class="box">Your answer cell <code>{e(q.answer)}</code> raised <code>{e(q.answer_error)}</code>.</div>')
        if q.grade_id in visible_code:
            out.append(f"<details><summary>The visible checks (as in your notebook)</summary><pre>{e(visible_code[q.grade_id])}</pre></details>")
        if q.visible:
            out.append(f"<p>Output of the visible checks:</p><pre>{e(q.visible.rstrip())}</pre>")
        if q.visible_error:
            out.append(f'<p>A visible check failed: <code class="bad">{e(q.visible_error)}</code></p>')
            if q.visible_traceback:
                out.append(f"<details><summary>Traceback</summary><pre>{e(q.visible_traceback)}</pre></details>")
        if q.hidden == "passed":
            out.append('<p>Further checks run after hand-in: <span class="ok">passed</span>.</p>')
        elif q.hidden == "failed":
            out.append(f'<p>Further checks run after hand-in: <span class="bad">failed</span>: <code>{e(q.hidden_error)}</code></p>')
        elif q.hidden == "not run":
            out.append("<p>Further checks run after hand-in: not run (an earlier check failed or the notebook stopped).</p>")
        if q.answer and q.answer in result.answers:
            out.append(f"<details><summary>Your answer <code>{e(q.answer)}</code> as graded</summary>"
                       f"<pre>{e(result.answers[q.answer])}</pre></details>")
    if figures or withheld:
        out.append("<h2>Your figures</h2>")
        out += [f'<figure><img alt="figure {i + 1} of your notebook" src="data:image/png;base64,{png}"></figure>'
                for i, png in enumerate(figures)]
        if withheld:
            out.append(f'<p class="note">{withheld} figure(s) drawn after the first hidden check are not shown here '
                       "(they could show that check's inputs); your instructor sees them, and your own notebook draws them too.</p>")
    out.append("</body></html>")
    return "\n".join(out)


def _figures(result, template) -> tuple[list[str], int]:
    """Base64 PNGs of the figures the graded notebook produced (already checked as PNG by the engine), except
    those drawn after a hidden check had called the student's code (the instructor sees them in Formgrader)."""
    if not getattr(result, "executed", None):
        return [], 0
    try:
        nb = nbformat.reads(result.executed, as_version=4)
    except Exception:  # noqa: BLE001
        return [], 0
    found, withheld = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("metadata", {}).get(AFTER_HIDDEN):  # may show what the code kept of hidden inputs
                withheld += 1
                continue
            png = out.get("data", {}).get("image/png") if out.get("output_type") == "display_data" else None
            if isinstance(png, str) and re.fullmatch(r"[A-Za-z0-9+/=\s]+", png):
                found.append(png.replace("\n", ""))
    return found[:20], withheld


def write(result, path: Path, template: Template | None = None, comments: dict[str, str] | None = None,
          by_hand: set[str] | frozenset = frozenset()) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(result, template, comments, by_hand), encoding="utf-8")
    return path


def with_human_marks(result, scores: dict, comments: dict) -> tuple[dict[str, str], set[str]]:
    """Apply the gradebook's human scores to ``result`` (in place); its comments and scored ids."""
    base = result.key
    by_hand = set()
    for q in result.questions:
        score = scores.get((*base, q.grade_id))
        if score is None:
            continue
        q.score, q.status, by_hand = float(score), Status.GRADED, by_hand | {q.grade_id}
        if q.graded_by == "manual":
            q.reason = "graded by your instructor"
    names = {n for q in result.questions for n in (q.grade_id, q.answer) if n}
    return {n: comments[(*base, n)] for n in names if (*base, n) in comments}, by_hand


def regenerate(out: Path, db=None, allow_other_course: bool = False, log=print) -> int:
    """``python -m grading feedback --out OUT [--db URL]``: rewrite OUT/feedback/ with the human part.

    Reads the stored results of ``autograde`` (OUT/results/) and the gradebook's human scores and
    comments (Formgrader), and writes every page again: written answers show their score and
    comment, and totals include them.  Hidden tests never appear (they are not in the results, and
    the figures come from the autograded notebooks, which hold none).  Returns the page count.
    """
    import json

    from grading import course
    from grading.model import SubmissionResult
    from grading.reporting.gradebook import autograded_dir_for, check_gradebook, db_url_for, human_marks

    out = Path(out)
    results = out / "results"
    if not results.is_dir():
        raise FileNotFoundError(f"no graded results in {results}: run `python -m grading autograde ... --out {out}` first")
    db_url = db_url_for(db)
    check_gradebook(db_url, allow_other_course, must_exist=True)
    scores, comments = human_marks(db_url)
    autograded = autograded_dir_for(db_url)
    sources = {(nb.assignment, nb.name): nb.source for nb in course.notebooks()}
    templates: dict = {}
    n = humans = 0
    for path in sorted(results.rglob("*.json")):
        try:
            result = SubmissionResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log(f"skipped {path}: unreadable ({type(exc).__name__})")
            continue
        sid, aid, nid = result.key
        key = (aid, nid)
        if key not in templates and key in sources:
            templates[key] = load_template(sources[key], aid, nid)
        mine, by_hand = with_human_marks(result, scores, comments)
        humans += bool(mine or by_hand)
        executed = autograded / sid / aid / f"{nid}.ipynb"
        result.executed = executed.read_text(encoding="utf-8") if executed.is_file() else None
        write(result, out / "feedback" / sid / aid / f"{nid}.html", templates.get(key), mine, by_hand)
        n += 1
    log(f"wrote {n} feedback page(s) in {out / 'feedback'} ({humans} with scores or comments from a human)")
    return n
