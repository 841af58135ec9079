"""English phonemes (ARPAbet) with the `g2p_en` package: an alternative to `g2p_espeak` for English.

Pick it in the recipe's tokenizer config: `g2p: {type: g2p_en, conf: {stress: keep}}`.

g2p_en looks words up in CMUdict, disambiguates homographs with NLTK's POS
tagger and predicts out-of-vocabulary words with a small bundled GRU. It is not a
default dependency because it cannot run offline from PyPI alone: at import it
downloads NLTK data (`averaged_perceptron_tagger`, on NLTK >= 3.9 also
`averaged_perceptron_tagger_eng`, and `cmudict`) from NLTK's own server, which
no package registry serves. So this module checks for the package and the data
*before* importing g2p_en (which would try the network) and says what to
install when something is missing.

Symbols: the fixed ARPAbet inventory g2p_en can emit (vowels with stress digits
0/1/2 by default, `stress: drop` removes them), " " between words and the
punctuation g2p_en passes through (`. , ? ! ' -`); local id 0 = `<unk>` for
anything else. The inventory does not depend on data, so nothing is trained.
There is no decoder: phones -> text is not invertible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np

from espnet2.speechlm.tokenizers.abs_tokenizer import AbsTokenizer, register_tokenizer
from espnet2.speechlm.tokenizers.label import UNK, Inventory, check_str

CONSONANTS = ["B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH", "T",
              "TH", "V", "W", "Y", "Z", "ZH"]
VOWELS = ["AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"]
PUNCT = [" ", ".", ",", "?", "!", "'", "-"]
INSTALL_HINT = (
    "pip install g2p_en, then fetch its NLTK data where there is network: "
    "python -c \"import nltk; [nltk.download(r) for r in "
    "('averaged_perceptron_tagger', 'averaged_perceptron_tagger_eng', 'cmudict')]\" "
    "(set NLTK_DATA to use a copied nltk_data folder); or use g2p_espeak, which works offline"
)


def nltk_resources(nltk_version: str) -> List[str]:
    """NLTK data g2p_en needs: its import checks the old tagger; NLTK >= 3.9's pos_tag reads the _eng one."""
    need = ["taggers/averaged_perceptron_tagger", "corpora/cmudict"]
    try:
        major_minor = tuple(int(x) for x in nltk_version.split(".")[:2])
    except ValueError:
        major_minor = (99, 0)
    if major_minor >= (3, 9):
        need.append("taggers/averaged_perceptron_tagger_eng")
    return need


def load_g2p_en() -> Callable[[str], List[str]]:
    """g2p_en.G2p() after checking, without any network access, that it can run."""
    try:
        import nltk
    except ImportError:
        raise ImportError(f"g2p_en tokenizer: the g2p_en package (and nltk) is not installed; {INSTALL_HINT}") from None
    missing = []
    for res in nltk_resources(getattr(nltk, "__version__", "0")):
        try:
            nltk.data.find(res)
        except LookupError:
            missing.append(res)
    if missing:
        raise RuntimeError(f"g2p_en tokenizer: NLTK data {missing} not found (searched {list(nltk.data.path)}); "
                           f"{INSTALL_HINT}")
    try:
        from g2p_en import G2p
    except ImportError as e:
        raise ImportError(f"g2p_en tokenizer: cannot import g2p_en ({e}); {INSTALL_HINT}") from None
    try:
        return G2p()
    except LookupError as e:  # data that the checks above did not catch
        raise RuntimeError(f"g2p_en tokenizer: NLTK data missing ({str(e).strip()[:200]}); {INSTALL_HINT}") from None


def arpabet_inventory(stress: str) -> Inventory:
    vowels = [v + d for v in VOWELS for d in "012"] if stress == "keep" else VOWELS
    return Inventory([UNK] + PUNCT + sorted(CONSONANTS + vowels))


@register_tokenizer("g2p_en")
class G2PEnTokenizer(AbsTokenizer):
    def __init__(self, stress: str = "keep", phonemizer: Optional[Callable[[str], List[str]]] = None):
        """`phonemizer` (text -> g2p_en-style symbol list) defaults to g2p_en.G2p()."""
        if stress not in ("keep", "drop"):
            raise ValueError(f"g2p_en: stress must be keep/drop, got {stress!r}")
        self.stress = stress
        self.inventory = arpabet_inventory(stress)
        self.g2p = phonemizer if phonemizer is not None else load_g2p_en()
        self.codebook_size = len(self.inventory)
        self.n_streams = 1

    def _symbols(self, raw: Sequence[str]) -> List[str]:
        out: List[str] = []
        for s in raw:
            if s and not any(c.isalnum() for c in s) and s != " ":
                # punctuation passes through g2p_en as whole words ("...", "--"): one symbol per char
                out.extend(c for c in s if not c.isspace())
            else:
                out.append(s.rstrip("012") if self.stress == "drop" and s[:1].isalpha() else s)
        return [s for s in out if s]

    def phonemize(self, items: Sequence[str]) -> List[List[str]]:
        if isinstance(items, str):
            raise TypeError("g2p_en.tokenize takes a list of strings; wrap a single one as [text]")
        texts = [check_str(t, i, "g2p_en") for i, t in enumerate(items)]
        return [self._symbols(self.g2p(t)) if t.strip() else [] for t in texts]

    def tokenize(self, items: Sequence[str]) -> list[np.ndarray]:
        """texts -> list of [n_symbols, 1] int64 (g2p_en has no batch API: one call per text)."""
        return [self.inventory.encode(p) for p in self.phonemize(items)]

    def detokenize(self, tokens: np.ndarray) -> str:
        raise NotImplementedError("g2p_en has no decoder (phones -> text is not invertible); use `phones(tokens)`")

    def phones(self, tokens: np.ndarray) -> List[str]:
        return self.inventory.decode(tokens)

    def token_strings(self) -> list[str]:
        return ["<space>" if s == " " else s for s in self.inventory.symbols]

    @classmethod
    def load(cls, model_dir: Optional[Path], stress: str = "keep", **conf) -> "G2PEnTokenizer":
        if conf:
            raise ValueError(f"g2p_en: unknown conf keys {sorted(conf)} (has stress)")
        return cls(stress)
