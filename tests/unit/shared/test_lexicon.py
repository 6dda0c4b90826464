"""Word vectors: our tokeniser, the shipped NRC + VADER lexicons, the paper's two lexicon files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.lexicon import (
    NRC_DIMS,
    LexiconError,
    load_lexicons,
    tokenize,
)


def test_tokenize_lowercases_and_expands_contractions_and_numbers() -> None:
    assert tokenize("Don\u2019t STOP, well-being! 42 she's") == ["do", "not", "stop", "well", "being", "forty", "two",
                                                               "she", "is"]
    assert tokenize("...") == []


def test_default_vectors_are_11_dim_and_informative_for_emotional_words() -> None:
    lexset = load_lexicons("nrc+vader", missing="zero")
    assert len(lexset.dims) == 11
    vectors = lexset.vectors(["happy", "terrible", "table"])
    assert vectors.shape == (3, 11) and vectors.dtype == np.float32
    happy, terrible, table = vectors
    assert np.abs(happy).sum() > 0 and np.abs(terrible).sum() > 0
    assert not table.any(), "a word in neither lexicon is zero under missing='zero'"
    joy, positive, negative = NRC_DIMS.index("joy"), NRC_DIMS.index("positive"), NRC_DIMS.index("negative")
    assert happy[joy] == 1 and happy[positive] == 1 and happy[negative] == 0
    assert terrible[negative] == 1
    assert happy[-1] > 0.3 and terrible[-1] < -0.3, "VADER valence (rating / 4) has the word's sign"


def test_inflected_forms_find_their_lexicon_entry() -> None:
    lexset = load_lexicons("nrc+vader", missing="zero")
    assert np.abs(lexset.vectors(["loves"])[0]).sum() > 0


def test_missing_word_repeats_previous_vector_per_lexicon() -> None:
    lexset = load_lexicons("nrc+vader", missing="repeat")
    vectors = lexset.vectors(["table", "happy", "the", "car"])
    assert not vectors[0].any(), "nothing to repeat before the first known word"
    np.testing.assert_array_equal(vectors[2], vectors[1])
    np.testing.assert_array_equal(vectors[3], vectors[1])


def _paper_files(tmp_path: Path) -> tuple[Path, Path]:
    warriner = tmp_path / "Ratings_Warriner_et_al.csv"
    warriner.write_text("Word,V.Mean.Sum,A.Mean.Sum,D.Mean.Sum\nhappy,8.47,6.05,7.21\nsad,2.10,3.49,3.84\n")
    depeche = tmp_path / "DepecheMood_normfreq.txt"
    depeche.write_text(
        "Lemma#PoS\tAFRAID\tAMUSED\tANGRY\tANNOYED\tDONT_CARE\tHAPPY\tINSPIRED\tSAD\n"
        "happy#a\t0.05\t0.2\t0.05\t0.05\t0.1\t0.4\t0.1\t0.05\n"
        "happy#n\t0.05\t0.2\t0.05\t0.05\t0.1\t0.2\t0.3\t0.05\n"
        "sad#a\t0.1\t0.05\t0.1\t0.1\t0.1\t0.05\t0.05\t0.45\n"
    )
    return warriner, depeche


def test_paper_lexicons_give_11_dims_with_scaled_vad_and_pos_averaging(tmp_path: Path) -> None:
    warriner, depeche = _paper_files(tmp_path)
    lexset = load_lexicons("warriner+depechemood", warriner_csv=str(warriner), depechemood_tsv=str(depeche))
    assert len(lexset.dims) == 11
    happy, unknown, sad = lexset.vectors(["happy", "zzz", "sad"])
    assert happy[0] == pytest.approx((8.47 - 5) / 4, abs=1e-6)
    assert sad[0] < 0 < happy[0]
    assert happy[3 + 5] == pytest.approx(0.3), "happy#a and happy#n are averaged"
    np.testing.assert_array_equal(unknown, happy, err_msg="a missing word repeats the previous word's vector")


def test_paper_lexicons_need_their_files(tmp_path: Path) -> None:
    with pytest.raises(LexiconError, match="EMPATHY_WARRINER_CSV"):
        load_lexicons("warriner+depechemood")
    with pytest.raises(LexiconError, match="not found"):
        load_lexicons("warriner+depechemood", warriner_csv=str(tmp_path / "nope.csv"),
                      depechemood_tsv=str(tmp_path / "nope.tsv"))
