"""Held-out targeting (#12): cross-fitted uncertainty, an unlabelled pool with gated pseudo-labels, class budgets."""

import random

import pytest
import torch
from tiny import (
    TinyMLP,
    WordSwapGenerator,
    make_args,
    make_bert,
    make_text_dataset,
    make_tokenizer,
    make_trainer,
    make_vector_dataset,
    scored_text_pool,
)

from hf_active_synth import ActiveSynthesisConfig, ActiveSynthesisTrainer
from hf_active_synth.acquisition import mean_probabilities, score, select_per_class
from hf_active_synth.crossfit import crossfit_member_logits
from hf_active_synth.cycle import CycleStore
from hf_active_synth.generators.base import SynthesisTarget
from hf_active_synth.recipes.base import Recipe, RecipeTask
from hf_active_synth.targeting import (
    TargetingSettings,
    allocate_quotas,
    choose_targets,
    class_quotas,
    fold_assignment,
    interleave_by_rank,
    pseudo_labels,
    score_pool,
)


def settings(**overrides) -> TargetingSettings:
    values = dict(
        input_column="text",
        label_column="label",
        num_labels=3,
        targets_per_class=3,
        budget=10,
        acquisition_function="bald",
    )
    values.update(overrides)
    return TargetingSettings(**values)


def todays_choose_targets(pool_logits, pool, settings, seed):
    """`choose_targets` as it was before held-out targeting, frozen: the defaults must reproduce it exactly."""
    labels = torch.tensor(pool[settings.label_column])
    scores = score_pool(
        pool_logits, settings.acquisition_function, target_strategy=settings.target_strategy, seed=seed
    )
    per_class = select_per_class(scores, labels, settings.targets_per_class, settings.num_labels)
    ranked = interleave_by_rank(per_class, settings.targets_per_class, settings.num_labels)
    quotas = allocate_quotas(settings.budget, len(ranked))
    inputs = pool.select(ranked)[settings.input_column]
    return [
        SynthesisTarget(i, int(labels[e]), int(e), inputs[i], float(scores[e]), q)
        for i, (e, q) in enumerate(zip(ranked, quotas))
        if q > 0
    ]


# ----------------------------------------------------------------------------- defaults: today's targets


@pytest.mark.parametrize("strategy", ["uncertain", "random"])
@pytest.mark.parametrize(("budget", "per_class", "rows"), [(10, 3, 30), (4, 3, 30), (7, 5, 8), (64, 4, 40)])
def test_default_settings_give_todays_targets_exactly(strategy, budget, per_class, rows):
    pool, logits = scored_text_pool(num_rows=rows, seed=budget)
    config = ActiveSynthesisConfig(output_dir="unused", use_cpu=True, targets_per_class=per_class)
    defaults = TargetingSettings.from_config(config, num_labels=3)
    assert (defaults.target_source, defaults.class_budget) == ("train", "equal")
    current = settings(budget=budget, targets_per_class=per_class, target_strategy=strategy)
    assert choose_targets(logits, pool, current, seed=5) == todays_choose_targets(logits, pool, current, seed=5)


def test_config_validates_the_new_fields():
    for bad, match in (
        ({"target_source": "test"}, "target_source"),
        ({"crossfit_folds": 1}, "crossfit_folds"),
        ({"class_budget": "error"}, "class_budget"),
        ({"class_budget_floor": 1.5}, "class_budget_floor"),
        ({"pseudo_label_min_confidence": -0.1}, "pseudo_label_min_confidence"),
    ):
        with pytest.raises(ValueError, match=match):
            ActiveSynthesisConfig(output_dir="unused", use_cpu=True, **bad)


# ----------------------------------------------------------------------------- folds


def test_folds_are_a_seeded_stratified_partition():
    labels = [i % 3 for i in range(20)] + [0] * 4
    folds = fold_assignment(labels, 5, seed=7)
    assert folds == fold_assignment(labels, 5, seed=7)
    assert folds != fold_assignment(labels, 5, seed=8)
    sizes = [folds.count(f) for f in range(5)]
    assert sum(sizes) == len(labels) and max(sizes) - min(sizes) <= 1
    for label in range(3):
        per_fold = [sum(1 for y, f in zip(labels, folds) if y == label and f == fold) for fold in range(5)]
        assert max(per_fold) - min(per_fold) <= 1  # every class spread over the folds as evenly as it divides
    with pytest.raises(ValueError, match="crossfit_folds"):
        fold_assignment(labels[:3], 4, seed=0)


# ----------------------------------------------------------------------------- cross-fitting


class RecordingEstimator:
    """Test double: remembers the real and synthetic rows it was fitted on (the trainer's narrowed train_dataset)
    and scores every row with logits equal to its own seed, so the assembled logits name their estimator."""

    num_members = 2

    def __init__(self, trainer, seed, log):
        self.trainer, self.seed, self.log = trainer, seed, log

    def fit(self, context):
        rows = list(self.trainer.train_dataset)
        self.fitted_real = {tuple(row["features"].tolist()) for row in rows if not row["is_synthetic"]}
        self.fitted_synthetic = sum(bool(row["is_synthetic"]) for row in rows)
        self.log.append(self)
        return self

    def predict(self, dataset):
        self.scored = [tuple(row["features"].tolist()) for row in dataset]
        return torch.full((len(dataset), 2, self.num_members), float(self.seed))

    def member_logits(self, inputs):
        raise NotImplementedError


def vector_trainer(tmp_path, name="run", **overrides):
    args = make_args(tmp_path, name, input_column="features", learning_rate=1e-2, **overrides)
    return ActiveSynthesisTrainer(
        model=TinyMLP(),
        args=args,
        train_dataset=make_vector_dataset(20),
        eval_dataset=make_vector_dataset(8, seed=1),
    )


def add_synthetic(trainer, num_rows=5):
    rows = make_vector_dataset(num_rows, seed=9)
    trainer._add_synthetic(rows)
    return num_rows


def test_crossfit_scores_every_row_with_members_that_never_saw_it(tmp_path):
    trainer = vector_trainer(tmp_path)
    num_synthetic = add_synthetic(trainer)
    log = []
    logits = crossfit_member_logits(trainer, lambda seed: RecordingEstimator(trainer, seed, log), 4, seed=0)
    keys = [tuple(row["features"].tolist()) for row in trainer._real_train_inputs]
    assert logits.shape == (20, 2, 2) and len(log) == 4
    scored_by = {}
    for estimator in log:
        assert estimator.fitted_synthetic == num_synthetic  # every accepted synthetic row joins every fold
        assert not estimator.fitted_real & set(estimator.scored)  # no member saw a row it scores
        assert estimator.fitted_real | set(estimator.scored) == set(keys)
        scored_by.update(dict.fromkeys(estimator.scored, estimator.seed))
    # Each row's logits come from the estimator that scored it (the fold logits are put back in row order).
    assert torch.equal(logits[:, 0, 0], torch.tensor([float(scored_by[key]) for key in keys]))
    assert len(trainer.train_dataset) == 20 + num_synthetic  # restored after every fold
    again = crossfit_member_logits(trainer, lambda seed: RecordingEstimator(trainer, seed, []), 4, seed=0)
    assert torch.equal(again, logits)  # the same folds and seeds for the same seed


def test_restricting_the_training_rows_is_undone_even_on_error(tmp_path):
    trainer = vector_trainer(tmp_path)
    add_synthetic(trainer, 3)
    full = trainer.train_dataset
    with pytest.raises(RuntimeError):
        with trainer.restrict_real_rows([2, 5]):
            assert len(trainer.train_dataset) == 5
            for position, row in enumerate([2, 5]):
                assert torch.equal(trainer.train_dataset[position]["features"], full[row]["features"])
            assert [bool(row["is_synthetic"]) for row in trainer.train_dataset] == [False, False, True, True, True]
            raise RuntimeError("boom")
    assert trainer.train_dataset is full


def spy_on_member_training(trainer):
    calls = []
    original = trainer.train_member

    def train_member(model, *, seed, name, training_args=None):
        args = training_args if training_args is not None else trainer.args.member_args(seed, "unused")
        calls.append((name, len(trainer.train_dataset), args.learning_rate, args.num_train_epochs))
        return original(model, seed=seed, name=name, training_args=training_args)

    trainer.train_member = train_member
    return calls


def test_mc_dropout_crossfit_samples_a_fold_model_trained_like_the_main_model(tmp_path):
    trainer = vector_trainer(
        tmp_path, target_source="crossfit", crossfit_folds=2, member_learning_rate=0.5, member_num_train_epochs=1
    )
    add_synthetic(trainer, 4)
    calls = spy_on_member_training(trainer)
    logits = trainer._estimate_stage(cycle=1)
    # MC dropout trains nothing for the loop; each fold trains one fresh model on its 10 real + 4 synthetic rows,
    # with the main model's learning rate and epochs, not the members' (which would stand in badly for it).
    assert calls == [(f"crossfit_fold_{f}_model", 14, 1e-2, 3) for f in range(2)]
    assert logits.shape == (20, 2, 3)
    assert not torch.allclose(logits, trainer.predict_member_logits(trainer.pool_dataset))


def test_deep_ensemble_crossfit_trains_fold_members_only(tmp_path):
    trainer = vector_trainer(
        tmp_path, target_source="crossfit", crossfit_folds=2, uncertainty_method="deep_ensemble", ensemble_size=2
    )
    calls = spy_on_member_training(trainer)
    trainer._estimate_stage(cycle=1)
    names = [name for name, *_ in calls]
    assert names[:2] == ["deep_ensemble_member_0", "deep_ensemble_member_1"]  # the loop's own estimator
    assert names[2:] == [f"crossfit_fold_{f}_deep_ensemble_member_{m}" for f in range(2) for m in range(2)]
    assert [size for _, size, *_ in calls] == [20, 20, 10, 10, 10, 10]


def test_target_source_mismatches_fail_before_training(tmp_path):
    pool = make_vector_dataset(12, seed=3)
    with pytest.raises(ValueError, match="pool_dataset="):
        vector_trainer(tmp_path, target_source="pool")._check_ready_for_cycles()
    with pytest.raises(ValueError, match="labelled outside the loop"):
        vector_trainer(tmp_path, target_source="pseudo_labelled_pool")._check_ready_for_cycles()
    crossfit = ActiveSynthesisTrainer(
        model=TinyMLP(),
        args=make_args(tmp_path, input_column="features", target_source="crossfit"),
        train_dataset=make_vector_dataset(20),
        pool_dataset=pool,
    )
    with pytest.raises(ValueError, match="unused"):
        crossfit._check_ready_for_cycles()
    with pytest.raises(ValueError, match="crossfit_folds"):
        vector_trainer(tmp_path, target_source="crossfit", crossfit_folds=21)._check_ready_for_cycles()


def test_a_crossfit_run_targets_held_out_uncertainty(tmp_path):
    trainer = make_trainer(
        tmp_path, num_cycles=1, target_source="crossfit", crossfit_folds=3, load_best_cycle_at_end=False
    )
    history = trainer.run_cycles()
    assert history.cycles[1].num_accepted == 6
    saved = CycleStore(tmp_path / "run").load_pool_logits(1)
    # What the cycle saved (and targets rank) is not what the loop's own estimator, fitted on every row, says.
    assert saved.shape == (24, 2, 3) and torch.isfinite(saved).all()
    assert not torch.allclose(saved, trainer.predict_member_logits(trainer.pool_dataset))


# ----------------------------------------------------------------------------- the unlabelled pool


def test_pseudo_labels_are_the_ensemble_argmax_behind_a_confidence_gate():
    logits = torch.tensor([[4.0, 0.0], [0.0, 4.0], [0.1, 0.0]]).unsqueeze(-1).repeat(1, 1, 3)
    assert pseudo_labels(logits, 0.5).tolist() == [0, 1, 0]
    assert pseudo_labels(logits, 0.9).tolist() == [0, 1, -1]  # the near tie is no target


def test_pool_targets_never_read_the_true_labels_and_respect_the_gate():
    pool, logits = scored_text_pool(num_rows=40)
    current = settings(target_source="pool", pseudo_label_min_confidence=0.6, class_budget="uncertainty")
    targets = choose_targets(logits, pool, current, seed=1)
    rng = random.Random(0)
    corrupted = pool.map(lambda row: {"label": rng.randrange(3)})
    assert choose_targets(logits, corrupted, current, seed=1) == targets
    assert choose_targets(logits, pool.remove_columns("label"), current, seed=1) == targets
    probabilities = mean_probabilities(logits)
    assert targets and sum(t.num_samples for t in targets) == current.budget
    for target in targets:
        assert target.label == int(probabilities[target.example_id].argmax())
        assert probabilities[target.example_id, target.label] >= 0.6
    gated_out = {i for i in range(40) if probabilities[i].max() < 0.6}
    assert gated_out and not gated_out & {t.example_id for t in targets}
    # With the gate open, those rows compete again; with it shut, nothing is a target.
    assert gated_out & {t.example_id for t in choose_targets(logits, pool, settings(target_source="pool"), 1)}
    assert choose_targets(logits, pool, settings(target_source="pool", pseudo_label_min_confidence=1.0), 1) == []


def test_pseudo_labelled_pool_targets_carry_the_given_labels():
    pool, logits = scored_text_pool(num_rows=40)
    relabelled = pool.map(lambda row, index: {"label": index % 3}, with_indices=True)
    targets = choose_targets(logits, relabelled, settings(target_source="pseudo_labelled_pool"), seed=1)
    assert targets and all(target.label == target.example_id % 3 for target in targets)
    # Unlike target_source="pool", the ensemble's own pseudo-label plays no part.
    ensemble = choose_targets(logits, relabelled, settings(target_source="pool"), seed=1)
    assert {(t.example_id, t.label) for t in targets} != {(t.example_id, t.label) for t in ensemble}
    assert any(target.label != target.example_id % 3 for target in ensemble)


def test_the_recipes_pass_their_pool_only_for_pool_targets(tmp_path):
    train, pool = make_text_dataset(12), make_text_dataset(10, seed=5)
    task = RecipeTask(
        train=train, validation=train, pool=pool, test=train, label_names=["negative", "positive"],
        make_model=lambda seed: make_bert(seed), generator=None,
        processing_class=make_tokenizer(),
    )  # fmt: skip
    recipe = Recipe(object, object, {}, None, lambda script_args, task: [], {}, None)
    for source, expected in (("train", train), ("crossfit", train), ("pool", pool)):
        trainer = recipe.build_trainer(task, make_args(tmp_path, target_source=source), script_args=None)
        assert trainer.pool_dataset is expected


def test_a_pool_run_targets_pool_rows_with_pseudo_labels(tmp_path):
    pool = make_text_dataset(16, seed=7)
    trainer = ActiveSynthesisTrainer(
        model=make_bert(),
        args=make_args(tmp_path, num_cycles=1, target_source="pool", pseudo_label_min_confidence=0.0),
        train_dataset=make_text_dataset(24),
        eval_dataset=make_text_dataset(24, seed=1),
        processing_class=make_tokenizer(),
        generator=WordSwapGenerator(),
        pool_dataset=pool,
    )
    history = trainer.run_cycles()
    request = trainer.generator.requests[0]
    pool_logits = CycleStore(tmp_path / "run").load_pool_logits(0)
    assert pool_logits.shape[0] == 16 and history.cycles[1].num_accepted == 6
    for target in request.targets:
        assert target.example == pool[target.example_id]["text"]
        assert target.label == int(mean_probabilities(pool_logits)[target.example_id].argmax())


# ----------------------------------------------------------------------------- class budget


@pytest.mark.parametrize("seed", range(20))
def test_class_quotas_sum_to_the_budget_and_keep_the_floor(seed):
    rng = random.Random(seed)
    num_classes, budget, floor = rng.randint(1, 10), rng.randint(0, 100), rng.choice([0.0, 0.3, 0.5, 1.0])
    scores = {c: rng.random() * rng.choice([0.01, 1, 3]) for c in range(num_classes)}
    quotas = class_quotas(budget, scores, floor)
    assert sum(quotas.values()) == budget and set(quotas) == set(scores)
    assert min(quotas.values()) >= int(floor * budget / num_classes)
    ranked = sorted(scores, key=scores.get)
    assert [quotas[c] for c in ranked] == sorted(quotas[c] for c in ranked) or floor == 1.0


def test_class_quotas_favour_the_uncertain_class():
    assert class_quotas(40, {0: 0.1, 1: 0.3}, floor=0.5) == {0: 15, 1: 25}
    assert class_quotas(40, {0: 0.1, 1: 0.3}, floor=0.0) == {0: 10, 1: 30}
    assert class_quotas(41, {0: 0.1, 1: 0.3}, floor=1.0) == {0: 21, 1: 20}  # the equal split
    assert class_quotas(9, {0: 0.0, 3: 0.0, 5: 0.0}, floor=0.5) == {0: 3, 3: 3, 5: 3}
    assert class_quotas(5, {}, floor=0.5) == {}


def test_the_class_budget_follows_each_class_mean_uncertainty():
    pool, logits = scored_text_pool(num_rows=45)
    logits[torch.tensor(pool["label"]) == 2] *= 0.05  # class 2: members agree, little uncertainty
    current = settings(budget=30, class_budget="uncertainty", class_budget_floor=0.2)
    targets = choose_targets(logits, pool, current, seed=0)
    labels = torch.tensor(pool["label"])
    bald = score(logits, "bald")
    expected = class_quotas(30, {c: float(bald[labels == c].mean()) for c in range(3)}, 0.2)
    per_class = {c: [t for t in targets if t.label == c] for c in range(3)}
    assert {c: sum(t.num_samples for t in ts) for c, ts in per_class.items()} == expected
    assert expected[2] < min(expected[0], expected[1]) and expected[2] >= int(0.2 * 30 / 3)
    for c, ts in per_class.items():  # within a class: its targets, most uncertain first, as today
        assert [t.num_samples for t in ts] == allocate_quotas(expected[c], 3)[: len(ts)]
    assert [t.target_id for t in targets] == list(range(len(targets)))
    # The random baseline gets the same class budget (from the acquisition scores), with random targets.
    random_targets = choose_targets(logits, pool, settings(**{**current.__dict__, "target_strategy": "random"}), 0)
    assert {c: sum(t.num_samples for t in random_targets if t.label == c) for c in range(3)} == expected
