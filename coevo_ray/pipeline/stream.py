"""A fit on a sample, then one streaming pass over the whole corpus (``CoEvolver(sample_size=N)``).

The co-evolution (every temperature, preferences, DPO, embedder training, KMeans) runs on a
seeded sample of about ``sample_size`` rows — the hash of (id, seed) that ``EmbeddingKMeans``
samples with, so the sample is the same however the corpus is split into files or blocks. Every
other row then goes once through what the fit ended with, on Ray Data: the final LLM's greedy
interpretation (the vLLM actor pool), its embedding (and the text's, for ``concat``) by the final
embedder (the embedding actor pool), the nearest centre. The sample's rows keep what the fit gave
them.

The pass runs in units of ``stream_unit_rows`` consecutive ids, each a stage of the run
directory: Ray Data writes the unit's Parquet shards into a temporary directory that is renamed
when complete, so a killed driver or a lost node costs at most the unit in progress, and a
rerun with ``resume`` skips the finished ones — no row is lost or written twice. Each unit is its
own Ray Data execution over the rows of its id range, so the batches its rows are generated in
(and with them vLLM's float rounding) are the same whether or not the pass was interrupted
before it; the price is one actor-pool start per unit. The driver holds the sample, the centres
and one count per unit and cluster: nothing of the corpus's size.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from coevo_ray.pipeline.context import LLMWeights, RunContext
from coevo_ray.rundir import fingerprint

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class SampledCorpus:
    """A corpus too large for the loop: the whole of it on the cluster, and the seeded sample the
    loop runs on, in the driver."""

    dataset: Any  # data.dataset.CorpusDataset: every row
    key: str  # the run-directory key of its rows (data.dataset.read_input)
    in_memory: bool
    fraction: float  # the sample's share: a row is in it when its (id, seed) hash is below this
    seed: int
    ids: np.ndarray  # the sample's corpus ids, ascending: row i of ``corpus`` is corpus id ids[i]
    corpus: Any  # data.Corpus of the sample (model texts, labels when labelled)


@dataclass(frozen=True)
class StreamedAssignments:
    dirs: list[Path]  # the sample's directory, then one per unit
    sizes: np.ndarray  # rows per cluster over the whole corpus
    n_rows: int
    fraction: float

    def labels_in_id_order(self) -> np.ndarray:
        """Every row's cluster, by id (for in-memory inputs, which fit in the driver)."""
        import pyarrow.parquet as pq

        labels = np.full(self.n_rows, -1, dtype=np.int64)
        for d in self.dirs:
            table = pq.read_table(str(d), columns=["id", "cluster"])
            labels[table.column("id").to_numpy()] = table.column("cluster").to_numpy()
        return labels


def sample_corpus(dataset, key: str, in_memory: bool, sample_size: int, seed: int) -> SampledCorpus:
    """The rows of ``dataset`` in the seeded sample of about ``sample_size`` rows, gathered in the
    driver in id order (the only rows it ever holds)."""
    import pyarrow as pa
    import ray

    from coevo_ray.clustering.sampled import in_sample
    from coevo_ray.data import Corpus
    from coevo_ray.errors import InputError

    n = len(dataset)
    fraction = min(1.0, sample_size / n)
    columns = ["id", "text"] + (["label"] if dataset.labelled else [])

    def keep(batch):
        return batch.filter(pa.array(in_sample(batch.column("id").to_numpy(), fraction, seed)))

    refs = dataset.dataset.select_columns(columns).map_batches(keep, batch_format="pyarrow").to_arrow_refs()
    table = pa.concat_tables(ray.get(refs)).sort_by("id")
    if table.num_rows < 2:
        raise InputError(f"the sample of {n} rows at sample_size={sample_size} holds {table.num_rows} row(s); "
                         "raise sample_size")
    texts = table.column("text").to_pylist()
    labels = [str(y) for y in table.column("label").to_pylist()] if dataset.labelled else None
    stats = {**dataset.stats, "sampled_from": n, "n_texts": table.num_rows}
    corpus = Corpus(texts, labels, f"{dataset.source} (sample of {table.num_rows}, seed {seed})", stats)
    logger.info("sample: %d of %d rows (sample_size=%d, seed %d) for the co-evolution; the other %d stream after it",
                table.num_rows, n, sample_size, seed, n - table.num_rows)
    return SampledCorpus(dataset, key, in_memory, fraction, seed, table.column("id").to_numpy(), corpus)


def stream_fit(ctx: RunContext, sampled: SampledCorpus, result, names: list[str]) -> StreamedAssignments:
    """After the loop ran on the sample: its rows as the fit assigned them, and every other row
    streamed through the final LLM, embedder and centres (``result``: the loop's FitResult)."""
    sample_dir = write_sample_unit(ctx, sampled.ids, ctx.model_texts(), result.labels, result.distances,
                                   result.interpretations, names)
    assigner = Assigner.of(ctx, result.llm, result.embedder_dir, result.cluster_centers, names, result.representation)
    dirs, sizes = stream_corpus(ctx, sampled.dataset, sampled.key, assigner, sampled.fraction, sampled.seed,
                                ctx.config.stream_unit_rows)
    sizes = sizes + np.bincount(result.labels, minlength=len(names))[: len(names)]
    return StreamedAssignments([sample_dir, *dirs], sizes, len(sampled.dataset), sampled.fraction)


@dataclass(frozen=True)
class Assigner:
    """What assigning a text takes from a fitted model: the final LLM's engine and greedy
    settings, the final embedder, the centres and the cluster names."""

    spec: Any  # interpret.EngineSpec
    settings: Any  # interpret.GenerationSettings, greedy only
    generation: Any  # StageResources of the generation actors (the plan's)
    embedding: Any  # StageResources of the embedding actors (the plan's)
    embedder_dir: str
    prompt: str
    encode_batch_size: int
    centers: np.ndarray
    normalize: bool
    representation: str
    text_weight: float
    names: tuple[str, ...]

    @classmethod
    def of(cls, ctx: RunContext, llm: LLMWeights, emb_dir: Path, centers: np.ndarray, names: list[str],
           representation: str) -> "Assigner":
        """``representation``: what the fit clustered (the configured kind, or the one "auto" chose);
        "raw-text" places the texts by the embedder as loaded."""
        from coevo_ray.embed import model_prompt
        from coevo_ray.models import resolve_model
        from coevo_ray.pipeline.generation import InterpretStage

        cfg = ctx.config
        if representation == "raw-text":
            representation, emb_dir = "text", resolve_model(cfg.embed.embedder)
        spec, settings = InterpretStage().settings(ctx, llm, cfg.interpret.temperatures[:1])
        return cls(spec, settings, ctx.plan.generation, ctx.plan.embedding, str(emb_dir),
                   model_prompt(emb_dir, cfg.embed.prompt_name), cfg.embed.batch_size,
                   np.asarray(centers, np.float32), cfg.cluster.normalize, representation, cfg.cluster.text_weight,
                   tuple(names))

    def key(self) -> str:
        """What a unit's rows depend on (beside the unit's ids and the corpus)."""
        return fingerprint("stream-assigner", self.spec, self.settings, self.embedder_dir, self.prompt,
                           self.encode_batch_size, self.centers.tobytes().hex(), self.normalize, self.representation,
                           self.text_weight, list(self.names))

    def interpret(self, ds):
        """``ds`` (id, text) → id, text, interpretation (the final LLM's greedy answer); lazy."""
        from coevo_ray.interpret import interpret_dataset

        out = interpret_dataset(ds.select_columns(["id", "text"]), self.spec, self.settings, self.generation)
        return out.select_columns(["id", "text", "interpretation"])

    def place(self, ds):
        """``ds`` (id, text, interpretation) → id, text, cluster, cluster_name, distance,
        interpretation; lazy. The embeddings the representation needs come from one actor pool."""
        from coevo_ray.embed import embed_dataset

        columns = []
        if self.representation in ("interpretation", "concat"):
            columns.append(("interpretation", "interpretation_embedding"))
        if self.representation in ("text", "concat"):
            columns.append(("text", "text_embedding"))
        (source, target), *more = columns
        out = embed_dataset(ds, self.embedder_dir, self.embedding, input_column=source, output_column=target,
                            encode_batch_size=self.encode_batch_size, prompt=self.prompt, more_columns=tuple(more))
        return out.map_batches(_nearest_centre, fn_kwargs={"assigner": self}, batch_format="numpy",
                               udf_modifying_row_count=False)

def _vectors(batch: dict[str, np.ndarray], column: str) -> np.ndarray:
    values = batch.pop(column)
    return np.asarray(np.stack(values) if values.dtype == object else values, dtype=np.float32)


def _nearest_centre(batch: dict[str, np.ndarray], assigner: Assigner) -> dict[str, np.ndarray]:
    """The fit's representation of each row (``pipeline.loop.representation``) and its centre."""
    from coevo_ray.clustering import FaissKMeans, l2_normalize

    parts = []
    if assigner.representation in ("interpretation", "concat"):
        parts.append(_vectors(batch, "interpretation_embedding"))
    if assigner.representation in ("text", "concat"):
        parts.append(_vectors(batch, "text_embedding"))
    rep = parts[0] if len(parts) == 1 else np.hstack([l2_normalize(parts[0]),
                                                       assigner.text_weight * l2_normalize(parts[1])])
    cluster, distance = FaissKMeans.from_centers(assigner.centers, assigner.normalize).assign(rep)
    names = np.asarray(assigner.names, dtype=object)
    return {"id": batch["id"], "text": batch["text"], "cluster": cluster.astype(np.int64),
            "cluster_name": names[cluster], "distance": distance.astype(np.float32),
            "interpretation": batch["interpretation"]}


def _unit_rows(batch: dict[str, np.ndarray], start: int, stop: int, fraction: float, seed: int) -> dict[str, np.ndarray]:
    """The rows of ids [start, stop) outside the fit's sample."""
    from coevo_ray.clustering.sampled import in_sample

    ids = batch["id"]
    keep = (ids >= start) & (ids < stop) & ~in_sample(ids, fraction, seed)
    return {"id": ids[keep], "text": batch["text"][keep]}


def rows_outside_sample(start: int, stop: int, fraction: float, seed: int) -> int:
    from coevo_ray.clustering.sampled import in_sample

    return int(np.count_nonzero(~in_sample(np.arange(start, stop, dtype=np.int64), fraction, seed)))


def write_sample_unit(ctx: RunContext, ids: np.ndarray, texts: list[str], labels: np.ndarray, distances: np.ndarray,
                      interpretations: list[str], names: list[str]) -> Path:
    """The sample's rows as the fit assigned them, under their corpus ids."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def build(out: Path) -> None:
        table = pa.table({"id": np.asarray(ids, np.int64), "text": texts, "cluster": np.asarray(labels, np.int64),
                          "cluster_name": [names[int(c)] for c in labels],
                          "distance": np.asarray(distances, np.float32), "interpretation": interpretations})
        pq.write_table(table, out / "part-0.parquet")

    key = fingerprint("stream-sample", ctx.corpus_key, np.asarray(ids).tobytes().hex(), np.asarray(labels).tobytes().hex(),
                      list(names))
    path, _ = ctx.run.run_stage("stream-sample", key, build)
    return path


def stream_corpus(ctx: RunContext, corpus, corpus_key: str, assigner: Assigner, fraction: float, seed: int,
                  unit_rows: int) -> tuple[list[Path], np.ndarray]:
    """Assign every row of ``corpus`` (a :class:`~coevo_ray.data.dataset.CorpusDataset`; its rows
    keyed by ``corpus_key``) outside the sample, unit by unit; returns the units' directories and
    the rows per cluster they hold."""
    import pyarrow.parquet as pq

    from coevo_ray.errors import CoEvoError
    from coevo_ray.progress import parquet_progress

    k, n_rows = len(assigner.names), len(corpus)
    units = [(start, min(start + unit_rows, n_rows)) for start in range(0, n_rows, unit_rows)]
    todo = sum(rows_outside_sample(a, b, fraction, seed) for a, b in units)
    base_key = fingerprint("stream-unit", corpus_key, assigner.key(), fraction, seed)
    dirs, sizes, done, built_s, built = [], np.zeros(k, dtype=np.int64), 0, 0.0, 0
    logger.info("stream: assigning the %d rows outside the sample, in %d unit(s) of %d ids", todo, len(units), unit_rows)
    for number, (start, stop) in enumerate(units, 1):
        rows = rows_outside_sample(start, stop, fraction, seed)
        label = f"stream-{number:05d}"
        if rows == 0:  # every id of the unit is in the sample
            continue

        def build(out: Path, start=start, stop=stop, rows=rows, label=label) -> None:
            import ray

            part = corpus.dataset.map_batches(_unit_rows, fn_kwargs={"start": start, "stop": stop, "fraction": fraction,
                                                                     "seed": seed}, batch_format="numpy")
            # Two executions, one actor pool each: a generation actor and an embedding actor at
            # once would hold both cores of a 2-CPU machine and starve the read tasks feeding them.
            generated = out / "_generated"
            with parquet_progress(generated, rows, f"{label}-interpret"):
                assigner.interpret(part).write_parquet(str(generated))
            assigner.place(ray.data.read_parquet(str(generated))).write_parquet(str(out))
            shutil.rmtree(generated)

        began = time.perf_counter()
        path, reused = ctx.run.run_stage(label, fingerprint(base_key, start, stop), build)
        table = pq.read_table(str(path), columns=["cluster"])
        if table.num_rows != rows:
            raise CoEvoError(f"{path} holds {table.num_rows} rows, expected {rows}: remove it and resume")
        sizes += np.bincount(table.column("cluster").to_numpy(), minlength=k)[:k]
        dirs.append(path)
        done += rows
        seconds = 0.0 if reused else time.perf_counter() - began
        ctx.timings[label] = round(seconds, 2)
        if not reused:
            built_s, built = built_s + seconds, built + 1
        left = (len(units) - number) * built_s / built if built else float("nan")
        logger.info("stream: unit %d/%d %s; %d/%d rows, about %.0f s left", number, len(units),
                    "reused from the run directory" if reused else f"done in {seconds:.0f} s", done, todo, left)
    return dirs, sizes
