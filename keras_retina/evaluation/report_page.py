"""The report's HTML page: one self-contained file (CSS inline, figures and pictures as data URIs).

`render(report, figures, pictures)`: `report` is `report.build_report`'s dict (plus "title",
"about", "worst_pictures_note"), `figures` {name: data URI} of the PNG figures, `pictures` the
worst pictures ({"src": data URI, "file", "mistakes", "missed", "wrong"}). Every text that comes
from the user's data (class and file names) is escaped. A few lines of script mark a picture
that fails to show and count the pictures shown (`<body data-images-shown="n/m">`); the page
reads the same without it.
"""

import html
import re

from keras_retina.evaluation.error_breakdown import SHORT, TYPES

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1200px; padding: 0 24px 48px; color: #1d1d1f; }
h1 { font-size: 26px; margin: 24px 0 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ddd; }
.about { color: #555; } .numbers { display: flex; flex-wrap: wrap; gap: 10px; margin: 16px 0; }
.number { background: #f3f5f8; border-radius: 8px; padding: 8px 14px; min-width: 72px; }
.number b { display: block; font-size: 22px; } .number span { color: #555; font-size: 13px; }
table { border-collapse: collapse; font-size: 14px; margin: 8px 0; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e5e5e5; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f3f5f8; position: sticky; top: 0; }
.weak { background: #fff1f0; } .scroll { max-height: 620px; overflow-y: auto; display: inline-block; }
code { background: #f3f5f8; padding: 1px 5px; border-radius: 4px; }
.advice li { margin-bottom: 8px; } td.text { text-align: left; }
figure { margin: 12px 0; } figure img { max-width: 100%; }
.pictures { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 16px; }
.pictures figure { margin: 0; } .pictures img { width: 100%; border: 1px solid #ccc; }
figcaption { font-size: 13px; color: #444; word-break: break-all; }
.legend span { display: inline-block; margin-right: 18px; } .swatch { display: inline-block; width: 22px;
  height: 12px; margin-right: 6px; vertical-align: middle; }
"""

SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images), shown = 0;
  images.forEach(function (image) {
    if (image.complete && image.naturalWidth > 0) { shown += 1; }
    else { image.alt = "(this picture failed to show)"; image.style.outline = "3px solid red"; }
  });
  document.body.setAttribute("data-images-shown", shown + "/" + images.length);
});
"""

MEANING = {
    "classification": "right place (IoU >= 0.5), wrong class",
    "localisation": "right class, box off (IoU 0.1-0.5)",
    "both": "wrong class and box off",
    "duplicate": "a second detection of an object already found",
    "background": "a detection on nothing (IoU <= 0.1 with every box)",
    "missed": "an object no detection came near",
}


def _e(text):
    return html.escape(str(text), quote=True)


def _prose(text):
    """Escaped text whose `backquoted` parts are shown as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))


def _f(value, digits=3):
    """A number to show; COCO's -1 (no object of that size) and None as a dash."""
    return "&ndash;" if value is None or value < 0 else f"{value:.{digits}f}"


def render(report, figures, pictures):
    metrics = report["metrics"]
    threshold = report["score_threshold"]["value"]
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(report['title'])}</title>",
             f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{STYLE}</style></head><body>",
             f"<h1>{_e(report['title'])}</h1>"]
    about = "; ".join(f"{_e(k)}: {_e(v)}" for k, v in report.get("about", {}).items())
    parts.append(f"<p class='about'>{about}{'; ' if about else ''}{report['num_images']} pictures</p>")
    parts.append("<div class='numbers'>" + "".join(
        f"<div class='number'><b>{_f(metrics.get(name))}</b><span>{name}</span></div>"
        for name in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")) + "</div>")
    parts += _advice(report)
    parts += _threshold(report, threshold)
    parts += _classes(report)
    parts.append("<h2>Precision and recall</h2><p>COCO's interpolated precision at each recall, from the evaluation "
                 "that gave the AP (the area under a curve is its AP). Left: all classes at IoU 0.5 and 0.75, and "
                 "per object size (small: under 32&times;32 pixels, large: over 96&times;96). Right: each class at "
                 "IoU 0.5. A curve that ends early on the right never finds the rest of its objects; one that "
                 "starts low finds wrong things even at its highest scores.</p>")
    parts.append(f"<figure><img src='{figures['pr_curves']}' alt='PR curves'></figure>")
    parts += _confusion(report, figures)
    parts += _errors(report, figures)
    parts += _pictures(report, pictures, threshold)
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(parts)


def _advice(report):
    out = ["<h2>What to fix first</h2>"]
    if not report["advice"]:
        out.append("<p>No kind of error costs more than 0.005 AP50: the errors left are spread thinly.</p>")
        return out
    out.append("<ol class='advice'>")
    for item in report["advice"]:
        if item["delta_ap"] is None:
            out.append(f"<li><b>{_e(item['kind'])}</b>: {_prose(item['what_to_do'])}</li>")
            continue
        out.append(f"<li><b>{_e(item['kind'])}</b> (+{item['delta_ap']:.3f} AP50 if fixed, "
                   f"{report['errors']['types'][item['kind']]['count']} errors): {_prose(item['what_to_do'])}</li>")
    out.append("</ol>")
    return out


def _threshold(report, threshold):
    chosen = report["score_threshold"]["chosen"]
    return ["<h2>The score threshold to ship</h2>",
            f"<p><b>{threshold:.2f}</b> ({_e(chosen)}): keep detections scoring at least this. "
            f"<code>keras_retina predict --draw_threshold={threshold:.2f} ...</code> draws those; "
            f"<code>keras_retina export --nms_score_threshold={threshold:.2f} ...</code> makes an exported model "
            "return only those. Each class's own best threshold is in the table below; the confusion matrix "
            "and the pictures use this one.</p>"]


def _classes(report):
    out = ["<h2>Per class</h2><p>Weakest first. The recommended threshold is the score that maximises the class's "
           "F1 (precision and recall at IoU 0.5 of keeping every detection scoring at least it). Errors are "
           "the wrong detections scoring at least the threshold to ship, by the detection's class, and the "
           "objects missed, by their own class.</p>",
           "<div class='scroll'><table><tr><th>class</th><th>objects</th><th>detections</th><th>AP</th>"
           "<th>AP50</th><th>AP75</th><th>threshold</th><th>precision</th><th>recall</th><th>F1</th>"
           "<th>most common error</th></tr>"]
    ranked = sorted(report["classes"], key=lambda c: (c["AP"] is None, c["AP"] if c["AP"] is not None else 0))
    for item in ranked:
        best = item["recommended"] or {}
        errors = item["errors"]
        common = max(TYPES, key=lambda kind: errors[kind])
        common = f"{common} ({errors[common]})" if errors[common] else "&ndash;"
        weak = " class='weak'" if item["AP"] is not None and item["AP"] < 0.5 * (report["metrics"]["AP"] or 1) else ""
        out.append(f"<tr{weak}><td>{_e(item['name'])}</td><td>{item['num_gt']}</td><td>{item['num_detections']}</td>"
                   f"<td>{_f(item['AP'])}</td><td>{_f(item['AP50'])}</td><td>{_f(item['AP75'])}</td>"
                   f"<td>{_f(best.get('threshold'), 2)}</td><td>{_f(best.get('precision'))}</td>"
                   f"<td>{_f(best.get('recall'))}</td><td>{_f(best.get('f1'))}</td><td>{common}</td></tr>")
    out.append("</table></div>")
    return out


def _confusion(report, figures):
    matrix, labels = report["confusion"]["matrix"], report["confusion"]["labels"]
    background = len(labels) - 1
    pairs = sorted(((matrix[i][j], labels[i], labels[j]) for i in range(background) for j in range(background)
                    if i != j and matrix[i][j]), reverse=True)[:8]
    out = ["<h2>Confusion matrix</h2><p>Rows: the true class; columns: what it was detected as, at IoU 0.5 and "
           f"score &ge; {report['confusion']['score_threshold']:.2f}. The last column counts the objects of each "
           "class no detection found (missed); the last row the detections on no object (on background, "
           "duplicates, or too far off their object). Colours are shares of each row.</p>",
           f"<figure><img src='{figures['confusion_matrix']}' alt='confusion matrix'></figure>"]
    if pairs:
        out.append("<p>Mixed up most: " + ", ".join(
            f"{_e(true)} detected as {_e(detected)} ({count})" for count, true, detected in pairs) + ".</p>")
    return out


def _errors(report, figures):
    errors = report["errors"]
    out = ["<h2>Errors</h2><p>Every wrong detection and every missed object gets one kind, as TIDE (Bolya et al., "
           "ECCV 2020) defines them, at IoU 0.5. The AP it would add is AP50 recomputed with only the errors of "
           "that kind fixed: how much each kind costs.</p>",
           f"<figure><img src='{figures['errors']}' alt='error breakdown'></figure>",
           "<table><tr><th>kind</th><th>what it is</th><th>count</th><th>AP50 if fixed</th></tr>"]
    for kind in TYPES:
        item = errors["types"][kind]
        out.append(f"<tr><td>{kind} ({SHORT[kind]})</td><td class='text'>{MEANING[kind]}</td><td>{item['count']}</td>"
                   f"<td>+{item['delta_ap']:.3f}</td></tr>")
    out.append(f"<tr><td>all false positives</td><td class='text'>perfect precision</td><td></td>"
               f"<td>+{errors['perfect_precision']['delta_ap']:.3f}</td></tr>")
    out.append(f"<tr><td>all missed objects</td><td class='text'>perfect recall</td><td></td>"
               f"<td>+{errors['perfect_recall']['delta_ap']:.3f}</td></tr></table>")
    return out


def _pictures(report, pictures, threshold):
    out = [f"<h2>The pictures with the most mistakes</h2><p>At score &ge; {threshold:.2f}.</p>",
           "<p class='legend'><span><i class='swatch' style='background:#28c83c'></i>correct detection</span>"
           "<span><i class='swatch' style='background:#e61e1e'></i>wrong detection (with its kind)</span>"
           "<span><i class='swatch' style='border:2px dashed #ffd700'></i>missed object</span>"
           "<span><i class='swatch' style='border:1px dashed #888'></i>other labelled object</span></p>"]
    if report.get("worst_pictures_note"):
        out.append(f"<p>{_e(report['worst_pictures_note'])}</p>")
    elif not pictures:
        out.append("<p>No picture has a mistake at this threshold.</p>")
    out.append("<div class='pictures'>")
    for item in pictures:
        out.append(f"<figure><img src='{item['src']}' alt='{_e(item['file'])}'><figcaption>{_e(item['file'])}: "
                   f"{item['missed']} missed, {item['wrong']} wrong</figcaption></figure>")
    out.append("</div>")
    return out
