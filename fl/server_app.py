"""FedXray's Flower ServerApp: FedAvg (or FedProx) weighted by examples over the enrolled sites, an optional
differential-privacy wrapper, per-round metrics, server-side test evaluation and a model version per round.

Settings: Context.run_config (fl.task.RunSettings). Recording: fl.recorder (environment variables from the
central that launched the SuperLink; a local directory otherwise).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from fl.recorder import Recorder, open_recorder
from fl.strategy import FedXrayFedAvg, FedXrayFedProx
from fl.task import RunSettings, model_arrays, new_model, record_tensors, sanitize_tensors

log = logging.getLogger("fedxray.serverapp")

app = ServerApp()


def build_strategy(settings: RunSettings, *, on_reply=None):
    """(FedXray strategy, strategy to run): the second wraps the first when differential privacy is on."""
    common = dict(
        fraction_train=settings.fraction_train, fraction_evaluate=1.0, min_train_nodes=settings.min_sites,
        min_evaluate_nodes=settings.min_sites, min_available_nodes=settings.min_sites,
        transfer_dtype=settings.transfer_dtype, evaluate_every=settings.evaluate_every,
        num_rounds=settings.num_rounds, on_reply=on_reply, server_learning_rate=settings.server_learning_rate,
        server_momentum=settings.server_momentum, round_offset=settings.start_round,
    )  # fmt: skip
    if settings.strategy == "fedprox":
        inner = FedXrayFedProx(proximal_mu=settings.proximal_mu, **common)
    else:
        inner = FedXrayFedAvg(**common)
    if settings.dp == "off":
        return inner, inner
    from flwr.serverapp.strategy import (
        DifferentialPrivacyClientSideFixedClipping,
        DifferentialPrivacyServerSideFixedClipping,
    )

    wrapper = (DifferentialPrivacyClientSideFixedClipping if settings.dp == "client"
               else DifferentialPrivacyServerSideFixedClipping)  # fmt: skip
    # Noise std = multiplier x clipping norm / sampled sites; min-sites is the smallest (most noise) case.
    return inner, wrapper(inner, settings.dp_noise_multiplier, settings.dp_clipping_norm, settings.min_sites)


def dp_card(settings: RunSettings) -> dict:
    """The differential-privacy settings as recorded in every model card."""
    if settings.dp == "off":
        return {"enabled": False}
    return {
        "enabled": True,
        "mode": "client-side fixed clipping" if settings.dp == "client" else "server-side fixed clipping",
        "flower_wrapper": (
            "DifferentialPrivacyClientSideFixedClipping"
            if settings.dp == "client"
            else "DifferentialPrivacyServerSideFixedClipping"
        ),  # fmt: skip
        "client_mod": "fixedclipping_mod" if settings.dp == "client" else None,
        "clipping_norm": settings.dp_clipping_norm,
        "noise_multiplier": settings.dp_noise_multiplier,
        "num_sampled_clients": settings.min_sites,
        "noise_stddev": settings.dp_noise_multiplier * settings.dp_clipping_norm / settings.min_sites,
        "accounting": "none: FedAvg weights sites by examples, Flower's accountant needs equal weights",
    }


class FederatedRun:
    """One run: the global model, the strategy, the server-side test set and what is recorded each round."""

    def __init__(self, settings: RunSettings, recorder: Recorder, *, models_dir: Path, label: str,
                 flower_run_id: int) -> None:  # fmt: skip
        self.settings = settings
        self.recorder = recorder
        self.models_dir = models_dir
        self.label = label
        self.flower_run_id = flower_run_id
        self.inner, self.strategy = build_strategy(settings, on_reply=recorder.reply_received)
        self.model = self._initial_model()
        self.test_dir = settings.server_test_dir or os.environ.get("FEDXRAY_SERVER_TEST_DIR", "")
        self._test_ds = None
        self.best: tuple | None = None
        self.best_version: str | None = None
        self.versions: list[str] = []
        if settings.best_model:  # a resumed run: the best version of the rounds before the interruption
            self._restore_best(settings.best_model)

    def _restore_best(self, model_dir: str) -> None:
        from fl.metrics import selection_score
        from fl.modelfile import ModelFileError, read_card

        try:
            card = read_card(model_dir)
        except ModelFileError as exc:
            log.warning("Cannot read the best version so far (%s); the best is chosen among new rounds", exc)
            return
        score = selection_score(card.metrics.get("test"), card.metrics.get("validation"))
        if score is not None:
            self.best, self.best_version = score, card.version

    def _initial_model(self):
        s = self.settings
        if not s.initial_model:
            return new_model(s)
        from fl.modelfile import load_model

        model, card = load_model(s.initial_model)
        if card.arch != s.arch or int(card.input_size) != s.input_size:
            raise ValueError(f"the initial model {s.initial_model} is {card.arch} at {card.input_size} px, but the "
                             f"run config asks for {s.arch} at {s.input_size} px")  # fmt: skip
        return model

    def _server_test(self) -> dict | None:
        if not self.test_dir:
            return None
        from fl.data import discover, make_dataset
        from fl.metrics import compute_metrics
        from fl.train import predict_dataset

        if self._test_ds is None:
            samples = discover(self.test_dir)
            self._test_ds = make_dataset(samples, input_size=self.settings.input_size, scaling=self.settings.scaling,
                                         batch_size=32, training=False)  # fmt: skip
        return compute_metrics(*predict_dataset(self.model, self._test_ds))

    def _score(self, server_round: int, server_metrics: dict | None) -> tuple | None:
        """fl.metrics.selection_score of this round's server test or pooled validation metrics."""
        from fl.metrics import selection_score

        return selection_score(server_metrics, self.inner.rounds.get(server_round, {}).get("evaluate"))

    def evaluate_fn(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        """Called by Strategy.start before round 1 (round 0) and after every round with the global model."""
        from fl.metrics import flat_metrics
        from fl.modelfile import assign_tensors

        if server_round == 0 and self.settings.start_round:
            return None  # a resumed run's starting model is the version already recorded for that round
        server_round += self.settings.start_round
        assign_tensors(
            self.model, sanitize_tensors(record_tensors(arrays, "float32")), source="the global model"
        )
        server = self._server_test()
        info = self.inner.rounds.get(server_round, {})
        if server_round == 0 and server is None:
            return None
        self.recorder.round_finished(server_round=server_round, num_sites=info.get("num_sites", 0),
                                     train_metrics=info.get("train"), evaluate_metrics=info.get("evaluate"),
                                     server_metrics=server)  # fmt: skip
        if server_round > 0 and info.get("train") is not None:
            self._save_version(server_round, info, server)
        elif server_round > 0:
            log.warning(
                "Round %d aggregated nothing (no site replied in time); no new model version", server_round
            )
        return MetricRecord(flat_metrics(server)) if server else None

    def _save_version(self, server_round: int, info: dict, server: dict | None) -> None:
        from fl.modelfile import ModelCard, save_model

        s = self.settings
        version = f"{self.label}-round{server_round}"
        score = self._score(server_round, server)
        is_best = score is not None and (self.best is None or score > self.best)
        card = ModelCard(
            name=s.model_name, version=version, arch=s.arch, input_size=s.input_size, scaling=s.scaling,
            description=f"Federated training, run {self.label}, round {server_round} of {s.num_rounds}"
            + (f" (resumed after round {s.start_round})." if s.start_round else "."),
            training={"federated": True, "run_config": s.to_config(), "round": server_round,
                      "train_examples": info["train"]["num_examples"], "train_loss": info["train"]["train_loss"],
                      "train_accuracy": info["train"]["train_accuracy"]},
            metrics={"validation": info.get("evaluate"), "validation_source": "sites' validation patients, pooled",
                     "validation_before_round": info["train"]["validation_before"], "test": server},
            federation={"run": self.label, "flower_run_id": int(self.flower_run_id),
                        "central_run_id": s.central_run_id or None, "round": server_round,
                        "num_rounds": s.num_rounds, "participating_sites": info["num_sites"],
                        "sampled_sites": info["sampled"], "failed_replies": info["failures"],
                        "strategy": s.strategy, "proximal_mu": s.proximal_mu if s.strategy == "fedprox" else None,
                        "aggregation": "weighted mean by training examples; batch-norm variances of the pooled data",
                        "server_learning_rate": s.server_learning_rate, "server_momentum": s.server_momentum,
                        "min_sites": s.min_sites,
                        "round_timeout": s.round_timeout, "transfer_dtype": s.transfer_dtype,
                        "differential_privacy": dp_card(s)},
        )  # fmt: skip
        target = self.models_dir / version
        saved = save_model(self.model, target, card)
        if is_best:
            self.best, self.best_version = score, version
        self.versions.append(version)
        self.recorder.model_version(version=version, model_dir=target, card=dataclasses.asdict(saved),
                                    server_round=server_round, is_best=is_best)  # fmt: skip
        log.info("Saved model version %s%s", version, " (best so far)" if is_best else "")

    def execute(self, grid: Grid):
        """Run every round; returns Flower's Result."""
        s = self.settings
        return self.strategy.start(
            grid=grid, initial_arrays=model_arrays(self.model), num_rounds=s.num_rounds - s.start_round,
            timeout=s.round_timeout,
            train_config=ConfigRecord({"local-epochs": s.local_epochs}), evaluate_config=ConfigRecord(),
            evaluate_fn=self.evaluate_fn,
        )  # fmt: skip

    def summary(self) -> dict:
        return {"versions": self.versions, "best_version": self.best_version,
                "rounds": {r: {"num_sites": i["num_sites"], "sampled": i["sampled"], "failures": i["failures"]}
                           for r, i in sorted(self.inner.rounds.items())}}  # fmt: skip


def interrupted(exc: BaseException) -> bool:
    """Whether the ServerApp was stopped from outside (a signal, the SuperLink going away) rather than failing:
    the central resumes an interrupted run from its last saved version, but not a failed one."""
    if isinstance(exc, (KeyboardInterrupt, SystemExit, ConnectionError)):
        return True
    try:
        import grpc
    except ImportError:  # pragma: no cover - Flower depends on grpcio
        return False
    return isinstance(exc, grpc.RpcError)


class PromptGrid:
    """The run's Grid, waiting REPLY_POLL seconds instead of Flower's fixed 3 s between pulls of the sites'
    replies. Those pulls stay on the central's loopback (ServerApp to SuperLink), so polling more often costs
    the hospitals' links nothing; the SuperNodes' own 3 s loop towards the central is left as it is."""

    REPLY_POLL = 0.5

    def __init__(self, grid: Grid) -> None:
        self._grid = grid

    def __getattr__(self, name: str):
        return getattr(self._grid, name)

    def send_and_receive(self, messages, *, timeout: float | None = None):
        pending = set(self._grid.push_messages(messages))
        end = time.time() + (timeout or 0.0)
        replies: list = []
        while timeout is None or time.time() < end:
            got = list(self._grid.pull_messages(pending))
            replies.extend(got)
            pending.difference_update(m.metadata.reply_to_message_id for m in got)
            if not pending:
                break
            time.sleep(self.REPLY_POLL)
        return replies


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run FedXray's federated training for the run this ServerApp was started for."""
    settings = RunSettings.from_config(context.run_config)
    recorder, local = open_recorder(central_run_id=settings.central_run_id)
    label = recorder.run_started(flower_run_id=context.run_id, num_rounds=settings.num_rounds,
                                 min_sites=settings.min_sites, config=settings.to_config())  # fmt: skip
    t0 = time.time()
    try:
        run = FederatedRun(settings, recorder, models_dir=local.models_dir(), label=label or f"run{context.run_id}",
                           flower_run_id=context.run_id)  # fmt: skip
        run.execute(PromptGrid(grid))
    except BaseException as exc:
        status = "interrupted" if interrupted(exc) else "failed"
        recorder.run_finished(status=status, message=f"{type(exc).__name__}: {exc}")
        raise
    recorder.run_finished(status="finished", summary={**run.summary(), "seconds": round(time.time() - t0, 1)})
