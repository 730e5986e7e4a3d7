"""The long-range mix (ropelab.train.mixture) and teacher-forced answer scoring (ropelab.eval.answers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ropelab.eval.answers import answer_accuracy, answer_nll
from ropelab.train.mixture import TASKS, MixConfig, RowMaker, loss_mask, minimum_length, task_counts


@pytest.fixture(scope="module")
def tokenizer():
    from ropelab.experiments.tiny import train_tokenizer

    text = ("Now is the winter of our discontent made glorious summer by this sun of York. " * 40
            + "The pass key is 0123456789. key = . What is the pass key?" * 5)
    return train_tokenizer([text], 300)


@pytest.fixture(scope="module")
def stream(tokenizer):
    words = ["to", "be", "or", "not", "to", "be", "that", "is", "the", "question", "whether", "tis", "nobler", "in", "the", "mind", "to", "suffer", "the", "slings", "and", "arrows", "of", "outrageous", "fortune"]
    rng = np.random.default_rng(0)
    text = " ".join(rng.choice(words, size=6000))
    return np.asarray(tokenizer(text, add_special_tokens=False).input_ids)


def test_shares_must_sum_to_one_and_tasks_be_known():
    with pytest.raises(ValueError, match=r"must sum to 1, got 0\.9"):
        MixConfig(shares={"text": 0.5, "copy": 0.4})
    with pytest.raises(ValueError, match="unknown mix task 'sort'; allowed: text, repeat, copy"):
        MixConfig(shares={"text": 0.5, "sort": 0.5})
    with pytest.raises(ValueError, match=r"mix.shares\['copy'\] must be a number in \[0, 1\]"):
        MixConfig(shares={"copy": 1.5, "text": -0.5})
    with pytest.raises(ValueError, match="recall_queries"):
        MixConfig(recall_pairs=(2, 4), recall_queries=3)
    assert MixConfig(shares={"text": 0.25, "copy": 0.75}).shares == {"text": 0.25, "copy": 0.75}


def test_task_counts_sum_to_rows():
    mix = MixConfig(shares={"text": 1 / 3, "copy": 1 / 3, "recall": 1 / 3})
    counts = task_counts(mix, 100)
    assert sum(counts.values()) == 100 and sorted(counts.values()) == [33, 33, 34]


@pytest.mark.parametrize("task", [t for t in TASKS])
@pytest.mark.parametrize("length", [160, 512])
def test_rows_have_the_length_and_answers_the_truth(task, length, tokenizer, stream):
    maker = RowMaker(tokenizer, stream, MixConfig())
    if length < maker.minimum_length(task):
        pytest.skip("too short for this task")
    for seed in range(5):
        ids, answers = maker.row(task, length, np.random.default_rng(seed))
        assert ids.shape == answers.shape == (length,)
        assert ids.min() >= 0 and ids.max() < len(tokenizer)
        if task == "text":
            assert answers.max() == 0
            continue
        assert answers.max() > 0
        scored = np.flatnonzero(answers)
        if task == "copy":  # every scored run, with the two tokens before it, repeats an earlier window
            runs = np.split(scored, np.flatnonzero(np.diff(scored) > 1) + 1)
            for run in runs:
                window = ids[run[0] - 2: run[-1] + 1].tolist()
                before = ids[: run[0] - 2].tolist()
                assert any(before[i:i + len(window)] == window for i in range(len(before))), (seed, run)
        else:  # the scored digits appeared earlier in the row, in the same order
            groups = {g: ids[answers == g] for g in np.unique(answers[answers > 0])}
            for digits in groups.values():
                text = ids[: np.flatnonzero(answers)[0]].tolist()
                found = any(text[i:i + len(digits)] == digits.tolist() for i in range(len(text)))
                assert found, (task, digits)


@pytest.mark.parametrize("bad, message", [
    ({"repeat_period": (1, 0.5)}, r"mix.repeat_period must be \[tokens >= 2, share of the row in \(0, 0.5\]\], got \(1, 0.5\)"),
    ({"repeat_period": (4, 0.6)}, "mix.repeat_period must be"),
    ({"loss_on": "digits"}, "mix.loss_on must be one of all, answers, got 'digits'"),
    ({"alphabet": 8}, "mix.alphabet must be 0 .every token. or an integer >= 16, got 8"),
])
def test_bad_mix_options_name_the_value(bad, message):
    with pytest.raises(ValueError, match=message):
        MixConfig(**bad)


def test_repeat_rows_tile_one_period_and_score_from_its_second_repeat(tokenizer, stream):
    maker = RowMaker(tokenizer, stream, MixConfig(repeat_period=(4, 0.5)))
    periods = set()
    for seed in range(20):
        ids, answers = maker.row("repeat", 96, np.random.default_rng(seed))
        scored = np.flatnonzero(answers)
        p = scored[0] - 1  # the period: scoring starts at the second token of the second period
        periods.add(int(p))
        assert 4 <= p <= 48 and scored[-1] == 95 and len(scored) == 95 - p
        assert np.array_equal(ids[p:], ids[:96 - p])  # a copy one period back
        assert np.array_equal(answers[scored], np.arange(1, len(scored) + 1))  # one answer per token
    assert len(periods) > 10  # the period varies row to row: a fixed offset would need no induction


def test_a_repeat_row_of_the_minimum_length_has_answers(tokenizer, stream):
    for period in ((4, 0.5), (9, 0.25)):
        mix = MixConfig(repeat_period=period)
        n = minimum_length("repeat", mix)
        assert RowMaker(tokenizer, stream, mix).row("repeat", n, np.random.default_rng(0))[1].max() > 0
        assert RowMaker(tokenizer, stream, mix).row("repeat", n - 1, np.random.default_rng(0))[1].max() == 0


def test_a_one_token_match_picks_the_recall_pair(tokenizer, stream):
    """The token before each asked value is the key's own last token: wherever it precedes digits earlier in the row,
    they are that value (a shared ` = ` before every value left a 2-layer model at 0.50 on the first digit)."""
    maker = RowMaker(tokenizer, stream, MixConfig())
    for seed in range(5):
        ids, answers = maker.row("recall", 256, np.random.default_rng(seed))
        for g in range(1, int(answers.max()) + 1):
            at = np.flatnonzero(answers == g)
            cue, value = ids[at[0] - 1], ids[at].tolist()
            followers = {tuple(ids[i + 1:i + 1 + len(value)].tolist()) for i in range(at[0] - 1) if ids[i] == cue
                         and ids[i + 1] in maker.digits}
            assert followers == {tuple(value)}, (seed, g, followers)


def test_alphabet_limits_the_random_tokens(tokenizer, stream):
    maker = RowMaker(tokenizer, stream, MixConfig(alphabet=16))
    for task in ("repeat", "copy"):
        ids, _ = maker.row(task, 160, np.random.default_rng(0))
        assert set(ids.tolist()) <= set(maker.symbols.tolist()) and len(maker.symbols) == 16
    with pytest.raises(ValueError, match="mix.alphabet 100000 exceeds the tokenizer's"):
        RowMaker(tokenizer, stream, MixConfig(alphabet=100000))


def test_loss_mask_trains_text_rows_whole_and_other_rows_on_their_answers():
    answers = torch.tensor([[0, 0, 0, 0], [0, 0, 1, 2], [0, 3, 0, 0]])
    assert loss_mask(MixConfig(), answers) is None  # loss_on: all
    mask = loss_mask(MixConfig(loss_on="answers"), answers)
    assert mask.tolist() == [[True] * 4, [False, False, True, True], [False, True, False, False]]


def test_copy_answers_point_at_the_first_occurrence(tokenizer, stream):
    maker = RowMaker(tokenizer, stream, MixConfig(copy_spans=(1, 1), copy_span=(0.2, 0.2)))
    ids, answers = maker.row("copy", 200, np.random.default_rng(3))
    scored = np.flatnonzero(answers)
    k = 40  # 0.2 x 200
    assert len(scored) == k - 2 and scored[-1] == 199  # the repeat ends the row; its first 2 tokens unscored
    repeat = ids[200 - k:]
    source = [i for i in range(200 - 2 * k) if np.array_equal(ids[i:i + k], repeat)]
    assert source and source[0] <= (200 - 2 * k) // 4  # the first copy is early: the repeat is far away


def test_minimum_length_is_a_lower_bound_without_a_tokenizer(tokenizer):
    mix = MixConfig()
    for task in TASKS:
        exact = RowMaker(tokenizer, np.arange(1000) % 200 + 10, mix).minimum_length(task)
        assert minimum_length(task, mix) <= exact


def test_mix_rows_are_cached_and_pure(tokenizer, tmp_path, monkeypatch):
    from ropelab.train.mixture import mix_rows

    monkeypatch.setenv("ROPELAB_CACHE", str(tmp_path))
    corpus = tmp_path / "text"
    corpus.mkdir()
    (corpus / "a.txt").write_text("To be, or not to be, that is the question. " * 400)
    mix = MixConfig(shares={"text": 0.5, "copy": 0.5})
    ids, answers = mix_rows(mix, tokenizer, f"text:{corpus}", "all", 160, 10)
    assert ids.shape == answers.shape == (10, 160)
    again = mix_rows(mix, tokenizer, f"text:{corpus}", "all", 160, 10)
    assert torch.equal(ids, again[0]) and torch.equal(answers, again[1])
    assert len(list((tmp_path / "mix").glob("*.npz"))) == 1
    other = mix_rows(MixConfig(shares={"text": 0.5, "copy": 0.5}, seed=1), tokenizer, f"text:{corpus}", "all", 160, 10)
    assert not torch.equal(ids, other[0])
    with pytest.raises(ValueError, match="row length 20 is too short for mix task 'copy'|too short"):
        mix_rows(MixConfig(shares={"recall": 1.0}), tokenizer, f"text:{corpus}", "all", 20, 2)


class Oracle(torch.nn.Module):
    """A 'model' whose logits put all mass on a given next-token table: exact answers where told so."""

    def __init__(self, ids: torch.Tensor, wrong: set[tuple[int, int]], vocab: int = 50):
        super().__init__()
        self.table, self.wrong, self.vocab = ids, wrong, vocab
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, batch):
        n, t = batch.shape
        logits = torch.zeros(n, t, self.vocab)
        for r in range(n):
            for p in range(t - 1):
                tok = int(batch[r, p + 1])
                logits[r, p, (tok + 1) % self.vocab if (r, p + 1) in self.wrong else tok] = 10.0
        return type("Out", (), {"logits": logits})()


def test_answer_accuracy_counts_groups_and_tokens():
    ids = torch.tensor([[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]])
    answers = torch.tensor([[0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 1]])
    assert answer_accuracy(Oracle(ids, set()), ids, answers) == {"accuracy": 1.0, "token_accuracy": 1.0, "answers": 3,
                                                                 "by_position": [1.0, 1.0, 1.0]}
    # one wrong token, the second of answer 2 in row 0: that group fails, 6 of 7 tokens right
    result = answer_accuracy(Oracle(ids, {(0, 5)}), ids, answers)
    assert result["accuracy"] == pytest.approx(2 / 3) and result["token_accuracy"] == pytest.approx(6 / 7)
    assert result["by_position"] == pytest.approx([1.0, 2 / 3, 1.0])  # 3 first tokens, 3 second, 1 third
    first = answer_accuracy(Oracle(ids, {(0, 2), (1, 3)}), ids, answers)["by_position"]
    assert first == pytest.approx([1 / 3, 1.0, 1.0])
    with pytest.raises(ValueError, match="no answer tokens"):
        answer_accuracy(Oracle(ids, set()), ids, torch.zeros_like(ids))


def test_answer_nll_is_the_loss_of_the_answer_tokens_only():
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    answers = torch.tensor([[0, 0, 0, 1, 1, 0]])
    model = Oracle(ids, {(0, 3)})
    logits = model(ids).logits[0, :-1]
    nll = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="none")
    assert answer_nll(model, ids, answers) == pytest.approx(float(nll[[2, 3]].mean()))


@pytest.mark.parametrize("task, size", [("recall", 4), ("needle", 5), ("passkey", 5)])
def test_every_answer_is_its_digits(task, size, tokenizer, stream):
    maker = RowMaker(tokenizer, stream, MixConfig())
    ids, answers = maker.row(task, 512, np.random.default_rng(7))
    counts = np.bincount(answers)[1:]
    assert len(counts) >= 1 and (counts == size).all()
    assert set(ids[answers > 0].tolist()) <= set(maker.digits.tolist())


def test_rows_differ_and_the_length_check_is_exact(tokenizer, tmp_path, monkeypatch):
    from ropelab.train.mixture import check_length, mix_rows

    monkeypatch.setenv("ROPELAB_CACHE", str(tmp_path))
    corpus = tmp_path / "text"
    corpus.mkdir()
    (corpus / "a.txt").write_text("To be, or not to be, that is the question. " * 400)
    ids, _ = mix_rows(MixConfig(shares={"copy": 1.0}), tokenizer, f"text:{corpus}", "all", 64, 4)
    assert len({tuple(row.tolist()) for row in ids}) == 4  # every row its own draw
    mix = MixConfig(shares={"recall": 1.0})
    maker = RowMaker(tokenizer, np.arange(5000) % 200 + 10, mix)
    need = maker.minimum_length("recall")
    check_length(maker, mix, need, 5000)
    with pytest.raises(ValueError, match=f"row length {need - 1} is too short for mix task 'recall'"):
        check_length(maker, mix, need - 1, 5000)
    with pytest.raises(ValueError, match="does not fit in the corpus split's 100 tokens"):
        check_length(maker, mix, need, 100)
