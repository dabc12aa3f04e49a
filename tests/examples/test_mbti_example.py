"""examples/mbti_text.py: the type masking, the labels, and the script's runs."""

from __future__ import annotations

import gzip
import importlib.util
import math
import re
import subprocess
import sys
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "mbti_text.py"
TYPES = ["".join(letters) for letters in product("IE", "NS", "TF", "JP")]
FUNCTIONS = {"ni", "ne", "si", "se", "ti", "te", "fi", "fe"}


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("mbti_text", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mbti = _example()


def _leaks(text: str) -> list[str]:
    """Tokens as TfidfVectorizer sees them (lower-cased, 2+ word characters) that contain a
    type code or are a function term, plus upper-case partial codes such as NF."""
    tokens = TfidfVectorizer().build_analyzer()(text)
    leaks = [t for t in tokens if re.search("[ie][ns][tf][jp]", t) or t in FUNCTIONS]
    return leaks + re.findall(r"\b(?:[IE]?[NS][TF][JP]?|[NS][JP]|[TF][JP])s?\b", text)


@pytest.mark.parametrize("code", TYPES)
@pytest.mark.parametrize("form", ["{}", "{}s", "{}'s", "{}’s", "{}s'", "{}-T", "{}-A", "Mr{}"])
@pytest.mark.parametrize("case", [str.upper, str.lower, str.title])
def test_every_type_mention_is_masked(code: str, form: str, case: Any) -> None:
    text = f"I think ({form.format(case(code))}), honestly."
    masked, counts = mbti.mask_text(text)
    assert _leaks(masked) == [] and counts["type code"] == 1
    assert "think" in masked and "honestly" in masked


@pytest.mark.parametrize(
    "text",
    [
        "INTJs vs intj's vs ENFP-T vs INFJ’s",
        "ENTJ,INTP;ISFP. #istp @estj INFJ(or INFP?)",
        "see https://personalitycafe.com/infp-forum-idealists/123-x.html ok",
        "www.example.com/intj_life and http://a.b/c?type=ESTP",
        "an INxP or xNTJ, ENFPxENFP, INTPness, infpish, sxENTP, toENFP",
        "NFs and SJs, the NT and SP temperaments, NTPs, INT and TJ",
        "my Fi-Ne loop, Ni/Te, NiTe, FiNe, ni, FE, Ti's and Se-dom",
    ],
)
def test_crafted_text_has_no_type_left(text: str) -> None:
    masked, counts = mbti.mask_text(text)
    assert _leaks(text) != [] or counts["url"] > 0
    assert _leaks(masked) == []
    assert sum(mbti.mask_text(masked)[1].values()) == 0  # masking twice finds nothing new


def test_ordinary_words_are_kept() -> None:
    text = "Fine nine site Sis Tis infinite interest estimate sensible intuition Sister tie"
    masked, counts = mbti.mask_text(text)
    assert masked == text and sum(counts.values()) == 0


def test_trait_words_are_masked_unless_kept() -> None:
    text = "an introverted thinker, Extraverts, intuitives and sensors; feelers, judgers"
    masked, counts = mbti.mask_text(text)
    assert counts["trait word"] == 7 and re.sub(r"[\s,;]+", " ", masked).split() == ["an", "and"]
    kept, counts = mbti.mask_text(text, trait_words=False)
    assert kept == text and counts["trait word"] == 0


def test_counts_per_mask() -> None:
    _, counts = mbti.mask_text("INTJ here, Ni there, NFs, introverts, http://x.org/enfp")
    assert {k: v for k, v in counts.items() if v} == {
        "url": 1,
        "type code": 1,
        "partial code": 1,
        "function": 1,
        "trait word": 1,
    }


def test_labels_from_type_strings() -> None:
    assert mbti.parse_type("INTJ") == {"I/E": 0.0, "N/S": 0.0, "T/F": 0.0, "J/P": 0.0}
    assert mbti.parse_type("ESFP") == {"I/E": 1.0, "N/S": 1.0, "T/F": 1.0, "J/P": 1.0}
    assert mbti.parse_type(" enfj") == {"I/E": 1.0, "N/S": 0.0, "T/F": 1.0, "J/P": 0.0}
    bits = {tuple(mbti.parse_type(code).values()) for code in TYPES}
    assert len(bits) == 16


@pytest.mark.parametrize("bad", ["INTX", "ABCD", "INT", "INTJS", ""])
def test_bad_type_strings_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="not an MBTI type"):
        mbti.parse_type(bad)


def _fake_subset(folder: Path, n: int = 60) -> None:
    """The subset's file layout with made-up users: posts joined by |||, most quoted."""
    rng = np.random.default_rng(0)
    words = ["coffee", "music", "plan", "party", "book", "quiet", "idea", "feel", "logic"]
    lines = ["type,posts"]
    for i in range(n):
        code = TYPES[rng.integers(16)]
        posts = [" ".join(rng.choice(words, 6)) for _ in range(5)] + [f"I am {code}s"]
        field = "|||".join(posts)
        lines.append(f"{code},\"'{field}'\"" if i % 2 else f'{code},"{field}"')
    (folder / "mbti_subset").mkdir(parents=True)
    with gzip.open(folder / "mbti_subset" / "mbti_first412.csv.gz", "wt") as handle:
        handle.write("\n".join(lines) + "\n")


def test_smoke_run_on_made_up_users(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fake_subset(tmp_path)
    argv = ["--smoke", "--epochs", "2", "--folds", "2", "--data-dir", str(tmp_path)]
    assert mbti.main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"users naming their own type\s+60\s+0", out)
    assert "0 contain a type code" in out and "filled 0" in out


def test_skips_without_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert mbti.main(["--data-dir", str(tmp_path / "absent")]) == 0  # the script exits with it
    assert "not found" in capsys.readouterr().out


def test_smoke_run_on_the_subset() -> None:
    if not (mbti.DATA_DIR / mbti.FILE).is_file():
        pytest.skip(f"the MBTI subset is not in {mbti.DATA_DIR}")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    table = done.stdout.split("macro over the 4 axes")[1]
    rows = {line.split("  ")[0]: line for line in table.splitlines()[2:] if "±" in line}
    assert set(rows) == {"majority", "masked", "filled 0"}
    figures = [float(x) for line in rows.values() for x in re.findall(r"\d+\.\d+", line)]
    assert len(figures) == 18 and all(math.isfinite(x) and 0 <= x <= 1 for x in figures)
    assert re.search(r"users naming their own type\s+\d+\s+0\n", done.stdout)
