"""Phoneme tokenizer: text -> IPA phones with the espeak-ng command-line tool.

Why a subprocess: espeak-ng is a Debian package with no Python binding needed.
A whole batch goes through one `espeak-ng -q --ipa --sep=_` call, one item per
input line. espeak-ng may split an item into several output lines (one per
clause) or print nothing for punctuation-only text, so items are separated by
a sentinel line whose phonemisation is known; if the sentinel count does not
come out right, the batch falls back to one call per item (always correct).

Symbols (each a local id; the inventory is trained from the training text):
    phones as espeak prints them ("oʊ", "tʃ", "iː"),
    stress marks "ˈ" / "ˌ" as their own tokens (stress="separate", default),
    attached to the next phone (stress="attach") or removed (stress="drop"),
    " " between words and "|" between clauses.
Phones never seen in training map to `<unk>` = local id 0. espeak-ng's
language-switch flags (`(en)` ... `(fr)` around an English loanword in French
text) are dropped: they are not phones (the loanword's phones are kept).
There is no decoder: phones -> text is not invertible.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from espnet2.speechlm.tokenizers.abs_tokenizer import AbsTokenizer, register_tokenizer
from espnet2.speechlm.tokenizers.label import Inventory, check_str

STRESS_MARKS = ("ˈ", "ˌ")
WORD_SEP, CLAUSE_SEP = " ", "|"
SENTINEL_TEXT = "qxqxq"
LANG_FLAG = re.compile(r"\([^()\s]+\)")  # "(en)", "(fr)": espeak-ng switching voice mid-sentence
FILE = "g2p.json"


def run_espeak(lines: Sequence[str], language: str) -> list[str]:
    """One espeak-ng call; input one text per line, returns its stdout lines."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("g2p_espeak needs the espeak-ng program (Debian: apt-get install espeak-ng)")
    proc = subprocess.run(
        [exe, "-q", "-b", "1", "--ipa", "--sep=_", "-v", language],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        encoding="utf-8",
    )
    if proc.returncode != 0 or "does not exist" in proc.stderr:
        raise RuntimeError(f"espeak-ng -v {language} failed: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout.splitlines()


def split_phones(clause_lines: Sequence[str], stress: str) -> list[str]:
    """espeak output lines of one item -> symbol list, e.g. ['h', 'ə', 'l', 'ˈ', 'oʊ', ' ', ...]."""
    out: list[str] = []
    for clause in clause_lines:
        words = [w for w in LANG_FLAG.sub("", clause.replace("\u200d", "")).split() if w.strip("_")]
        if not words:
            continue
        if out:
            out.append(CLAUSE_SEP)
        for w, word in enumerate(words):
            if w:
                out.append(WORD_SEP)
            for ph in word.split("_"):
                if not ph:
                    continue
                marks = "".join(c for c in ph if c in STRESS_MARKS)
                core = "".join(c for c in ph if c not in STRESS_MARKS)
                if stress == "separate":
                    out.extend(marks)
                    if core:
                        out.append(core)
                elif stress == "attach":
                    out.append(marks + core)
                elif core:  # drop
                    out.append(core)
    return out


class EspeakPhonemizer:
    """Batched text -> phone symbols for one espeak-ng voice."""

    def __init__(self, language: str = "en-us", stress: str = "separate"):
        if stress not in ("separate", "attach", "drop"):
            raise ValueError(f"g2p_espeak: stress must be separate/attach/drop, got {stress!r}")
        self.language = language
        self.stress = stress
        self.sentinel = run_espeak([SENTINEL_TEXT], language)  # also checks the voice exists

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        clean = [" ".join(t.split()) for t in texts]  # no newlines inside an item
        groups = self._batched(clean) if len(clean) > 1 else None
        if groups is None:  # sentinel clash or single item: one call per item
            groups = [run_espeak([t], self.language) if t else [] for t in clean]
        return [split_phones(g, self.stress) for g in groups]

    def _batched(self, texts: list[str]) -> Optional[list[list[str]]]:
        lines: list[str] = []
        for i, t in enumerate(texts):
            if i:
                lines.append(SENTINEL_TEXT)
            lines.append(t)
        out = run_espeak(lines, self.language)
        groups: list[list[str]] = [[]]
        n = len(self.sentinel)
        i = 0
        while i < len(out):
            if out[i : i + n] == self.sentinel:
                groups.append([])
                i += n
            else:
                groups[-1].append(out[i])
                i += 1
        return groups if len(groups) == len(texts) else None


@register_tokenizer("g2p_espeak")
class G2PEspeakTokenizer(AbsTokenizer):
    def __init__(self, inventory: Inventory, language: str = "en-us", stress: str = "separate"):
        self.inventory = inventory
        self.phonemizer = EspeakPhonemizer(language, stress)
        self.codebook_size = len(inventory)
        self.n_streams = 1

    def phonemize(self, items: Sequence[str]) -> list[list[str]]:
        if isinstance(items, str):
            raise TypeError("g2p_espeak.tokenize takes a list of strings; wrap a single one as [text]")
        return self.phonemizer([check_str(t, i, "g2p_espeak") for i, t in enumerate(items)])

    def tokenize(self, items: Sequence[str]) -> list[np.ndarray]:
        """texts -> list of [n_symbols, 1] int64 (one espeak-ng process per batch)."""
        return [self.inventory.encode(p) for p in self.phonemize(items)]

    def detokenize(self, tokens: np.ndarray) -> str:
        raise NotImplementedError(
            "g2p_espeak has no decoder (phones -> text is not invertible); "
            "use `phones(tokens)` to read the phone symbols"
        )

    def phones(self, tokens: np.ndarray) -> list[str]:
        """[T, 1] ids -> phone symbols (for inspection)."""
        return self.inventory.decode(tokens)

    def token_strings(self) -> list[str]:
        return ["<space>" if s == WORD_SEP else s for s in self.inventory.symbols]

    @classmethod
    def needs_training(cls) -> bool:
        return True

    @classmethod
    def train(
        cls,
        items: Iterable[str],
        out_dir: Path,
        language: str = "en-us",
        stress: str = "separate",
        min_count: int = 1,
        batch_size: int = 2000,
        **conf,
    ) -> "G2PEspeakTokenizer":
        """Phone inventory of the training text (in batches of `batch_size` lines)."""
        phonemizer = EspeakPhonemizer(language, stress)
        texts = [check_str(t, i, "g2p_espeak") for i, t in enumerate(items)]
        if not any(t.strip() for t in texts):
            raise ValueError("g2p_espeak.train: got no text")
        phones = []
        for s in range(0, len(texts), batch_size):
            phones.extend(phonemizer(texts[s : s + batch_size]))
        inv = Inventory.fit(phones, min_count=min_count)
        inv.save(Path(out_dir) / FILE, language=language, stress=stress)
        return cls(inv, language, stress)

    @classmethod
    def load(cls, model_dir: Optional[Path], **conf) -> "G2PEspeakTokenizer":
        if model_dir is None:
            raise ValueError("g2p_espeak needs a trained model_dir (its phone inventory)")
        inv, meta = Inventory.read(Path(model_dir) / FILE)
        for key in ("language", "stress"):
            if key in conf and conf[key] != meta[key]:
                raise ValueError(
                    f"g2p_espeak: {key}={conf[key]!r} in config but the inventory was trained with {meta[key]!r}"
                )
        return cls(inv, meta["language"], meta["stress"])
