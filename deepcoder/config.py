"""One configuration schema for every stage.

Defaults live here and nowhere else. A resolved config is built from four layers, each
deep-merged over the previous one:

1. the schema defaults below;
2. a profile (``deepcoder/configs/<profile>.yaml``: ``default``, ``demo``, ``cluster``);
3. an optional user YAML file (``--config`` or ``DEEPCODER_CONFIG``);
4. environment variables: ``DEEPCODER_<SECTION>__<FIELD>=value`` (value parsed as YAML),
   plus the conventional ``GROQ_API_KEY`` / ``WANDB_API_KEY`` / ``WANDB_MODE``.

Unknown keys and wrong types are errors that name the key and the layer (file or variable)
that set it. Secrets are ``SecretStr`` and never printed.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

PROFILES = ("default", "demo", "cluster")
ENV_PREFIX = "DEEPCODER_"
# Variables with the prefix that select layers rather than set keys.
_ENV_CONTROL = {"DEEPCODER_PROFILE", "DEEPCODER_CONFIG", "DEEPCODER_LOG_LEVEL"}


class ConfigError(ValueError):
    """A config that cannot be loaded; the message names the key and where it was set."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, validate_assignment=True)


class TeacherConfig(_Section):
    """The reasoning teacher: Groq, DeepSeek's API, or any OpenAI-compatible endpoint."""

    provider: Literal["groq", "openai"] = "groq"
    base_url: str | None = Field(None, description="None = the provider's public endpoint.")
    model: str = Field("openai/gpt-oss-120b", description="Any reasoning model the endpoint serves.")
    api_key: SecretStr | None = Field(None, description="Usually taken from the variable in api_key_env.")
    api_key_env: str = Field("GROQ_API_KEY", description="Environment variable holding the key.")
    temperature: float = Field(0.6, ge=0.0, le=2.0)
    max_tokens: int = Field(4096, gt=0)
    reasoning_format: Literal["parsed", "raw", "hidden"] | None = "parsed"
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0)
    use_emulator: bool = Field(False, description="Use the loopback Groq emulator instead of base_url.")


class EmulatorConfig(_Section):
    """The loopback Groq emulator (``deepcoder teacher serve-local``, and the keyless demo)."""

    requests_per_minute: float | None = Field(None, gt=0, description="None = generation.requests_per_minute.")
    tokens_per_minute: float | None = Field(None, gt=0, description="None = generation.tokens_per_minute.")
    window_s: float = Field(60.0, gt=0, description="Budget window: the most a burst can spend.")
    latency_s: float = Field(0.05, ge=0, description="Simulated time per completion.")
    port: int = Field(0, ge=0, le=65535, description="0 = a free port.")


class GenerationConfig(_Section):
    """Trajectory collection with Ray actors under the provider's rate limits."""

    num_actors: int = Field(2, ge=1)
    episodes_per_actor: int = Field(4, ge=1, description="Concurrent episodes inside one actor.")
    requests_per_minute: int = Field(30, ge=1, description="Your provider's RPM for this key (cluster-wide).")
    tokens_per_minute: int = Field(6000, ge=1, description="Your provider's TPM for this key (cluster-wide).")
    samples_per_problem: int = Field(1, ge=1)
    max_problems: int | None = Field(None, ge=1)
    problem_sets: list[str] = Field(default_factory=lambda: ["mbpp", "math", "retrieval"])
    max_steps: int = Field(8, ge=1)
    step_timeout_s: float = Field(120.0, gt=0)
    episode_timeout_s: float = Field(600.0, gt=0)


class DataConfig(_Section):
    """Trajectories to REASON/ACT token masks."""

    tokenizer: str = Field("qwen2.5", description="Shipped tokenizer name or a local path.")
    max_seq_len: int = Field(4096, ge=64)
    truncation: Literal["drop", "step_boundary"] = "step_boundary"
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    seed: int = 0
    packing: bool = False


class StudentConfig(_Section):
    """The student model and its LoRA adapter."""

    model_name_or_path: str = "Qwen/Qwen2.5-3B-Instruct"
    load_in_4bit: bool = True
    use_unsloth: Literal["auto", "yes", "no"] = "auto"
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    gradient_checkpointing: bool = True


class TrainingConfig(_Section):
    """SAD training: the span weights (lambda) and the optimiser budget."""

    lambda_reason: float = Field(1.0, ge=0.0)
    lambda_act: float = Field(1.0, ge=0.0)
    lambda_obs: float = Field(0.0, ge=0.0)
    normalize: Literal["span_mean", "token_mean"] = "span_mean"
    learning_rate: float = Field(2e-4, gt=0)
    num_epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="-1 = run num_epochs.")
    per_device_batch_size: int = Field(1, ge=1)
    gradient_accumulation_steps: int = Field(8, ge=1)
    num_workers: int = Field(1, ge=0, description="Ray Train workers; 0 = train in this process.")
    use_gpu: bool = False
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(100, ge=1)
    seed: int = 0


class SweepConfig(_Section):
    """Ray Tune sweep over the lambda weights."""

    lambda_reason: list[float] = Field(default_factory=lambda: [0.5, 1.0, 2.0])
    lambda_act: list[float] = Field(default_factory=lambda: [0.5, 1.0, 2.0])
    learning_rate: list[float] = Field(default_factory=lambda: [2e-4])
    metric: str = Field("eval_loss_span_sum", description="Comparable across λ: REASON + ACT loss, unweighted.")
    mode: Literal["min", "max"] = "min"
    max_concurrent_trials: int = Field(1, ge=1)


class EvalConfig(_Section):
    """Benchmarks and the agentic suite."""

    benchmarks: list[Literal["humaneval", "mbpp", "agentic"]] = Field(
        default_factory=lambda: ["humaneval", "mbpp", "agentic"]
    )
    k: list[int] = Field(default_factory=lambda: [1, 10])
    num_samples: int = Field(10, ge=1)
    temperature: float = Field(0.8, ge=0.0)
    timeout_s: float = Field(10.0, gt=0)
    workers: int = Field(8, ge=1, description="Parallel sandboxed checks for pass@k (the warm pool matches it).")
    max_problems: int | None = Field(None, ge=1, description="First N problems of each benchmark (None = all).")
    max_new_tokens: int = Field(384, ge=1, description="Per benchmark sample and per agent step of a student.")
    agentic_sets: list[str] = Field(default_factory=lambda: ["mbpp", "math", "retrieval"],
                                    description="Held-out splits solved through the agent loop.")
    ood_sets: list[str] = Field(default_factory=lambda: ["humaneval", "ood"],
                                description="Task kinds never trained on, reported apart: humaneval, ood.")
    agentic_per_set: int | None = Field(20, ge=1, description="Problems per agentic set (None = all).")
    agentic_samples: int = Field(1, ge=1, description="Episodes per problem; 2+ measures consistency.")
    agentic_temperature: float = Field(0.0, ge=0.0, description="Student temperature in the agentic suite.")
    max_steps: int = Field(6, ge=1)
    step_timeout_s: float = Field(120.0, gt=0)
    episode_timeout_s: float = Field(600.0, gt=0)
    concurrency: int = Field(4, ge=1, description="Episodes (or teacher requests) in flight at once.")
    teacher_usd_per_mtok_in: float = Field(0.15, ge=0, description="Teacher price per 1M input tokens.")
    teacher_usd_per_mtok_out: float = Field(0.75, ge=0, description="Teacher price per 1M output tokens.")
    student_usd_per_hour: float = Field(1.0, ge=0, description="Hourly price of the machine serving the student.")


class ServeConfig(_Section):
    """The Ray Serve agent application."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_keys_env: str = Field("DEEPCODER_API_KEYS", description="Comma-separated keys, hashed at start.")
    api_keys: list[SecretStr] = Field(default_factory=list, description="More keys (hashed at start); prefer the env.")
    api_key_hashes: list[str] = Field(default_factory=list, description="SHA-256 hex digests of accepted keys.")
    requests_per_minute: int = Field(60, ge=1, description="Per key and per ingress replica.")
    key_requests_per_minute: dict[str, int] = Field(
        default_factory=dict, description="Per-key overrides, by key id (first 12 hex of the key's SHA-256).")
    max_steps: int = Field(8, ge=1, description="The most steps a request may ask for (and the default).")
    request_timeout_s: float = Field(120.0, gt=0, description="The most a request may ask for (and the default).")
    step_timeout_s: float = Field(60.0, gt=0, description="One model call inside a run.")
    cache_ttl_s: float = Field(300.0, ge=0, description="Response cache for identical greedy requests (0 = off).")
    cache_max_entries: int = Field(1024, ge=0)
    max_prompt_chars: int = Field(20000, ge=1)
    max_body_bytes: int = Field(1_000_000, ge=1024)
    session_ttl_s: float = Field(1800.0, gt=0, description="Idle time after which a session expires.")
    session_max_turns: int = Field(20, ge=1)
    max_sessions: int = Field(10000, ge=1)
    model: str = Field("smollm2", description="Student to serve: 'smollm2', a merged export folder, or a LoRA "
                                              "adapter folder (then base_model).")
    base_model: str | None = Field(None, description="Base of a LoRA adapter (None = its adapter_config.json).")
    tokenizer: str | None = Field(None, description="None = the model's own (smollm2's for a GGUF).")
    model_name: str | None = Field(None, description="Served model id and version label (None = from model).")
    max_new_tokens: int = Field(256, ge=1, le=32768)


class SandboxConfig(_Section):
    """Limits for untrusted Python. See docs/sandbox.md for what each one blocks."""

    python_executable: str = Field("/usr/bin/python3", description="Interpreter inside the sandbox.")
    timeout_s: float = Field(10.0, gt=0, le=3600)
    memory_mb: int = Field(512, ge=32)
    max_processes: int = Field(32, ge=1)
    max_file_size_mb: int = Field(16, ge=1)
    workdir_size_mb: int = Field(64, ge=1)
    max_output_bytes: int = Field(65536, ge=256)
    max_code_bytes: int = Field(1_000_000, ge=1)
    pool_size: int = Field(2, ge=0, description="Pre-started sandboxes kept warm (0 = start per call).")
    uid_base: int = Field(200000, ge=1000, description="Unprivileged uids used when running as root.")
    uid_count: int = Field(1000, ge=1)
    allow_unsandboxed: bool = Field(
        False, description="Without bubblewrap, fall back to rlimits only. Trusted local use only."
    )


class RetrievalConfig(_Section):
    """BM25 over the interpreter's own docs plus user documents."""

    include_stdlib: bool = True
    include_pydoc_topics: bool = True
    extra_paths: list[str] = Field(default_factory=list, description="Folders of .md/.txt or .jsonl files.")
    default_k: int = Field(3, ge=1)
    max_k: int = Field(20, ge=1)
    max_passage_chars: int = Field(1500, ge=200)


class PathsConfig(_Section):
    """Where artefacts and caches go (local paths or fsspec URLs for artefacts)."""

    output_dir: str = "runs"
    cache_dir: str = Field(
        default_factory=lambda: str(Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "deepcoder")
    )


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"


class WandbConfig(_Section):
    """Weights & Biases: offline unless a key is set."""

    mode: Literal["offline", "online", "disabled"] = "offline"
    project: str = "deepcoder"
    entity: str | None = None
    api_key: SecretStr | None = None


class RayConfig(_Section):
    """How the driver joins Ray: an address joins a cluster, None starts a local one."""

    address: str | None = None
    num_cpus: int | None = Field(None, ge=1)
    num_gpus: int | None = Field(None, ge=0)


class Config(_Section):
    """The whole system's configuration."""

    profile: str = "default"
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    emulator: EmulatorConfig = Field(default_factory=EmulatorConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    paths: PathsConfig = Field(default_factory=PathsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    wandb: WandbConfig = Field(default_factory=WandbConfig)
    ray: RayConfig = Field(default_factory=RayConfig)

    @model_validator(mode="after")
    def _check_retrieval_k(self) -> "Config":
        if self.retrieval.default_k > self.retrieval.max_k:
            raise ValueError("retrieval.default_k must not exceed retrieval.max_k")
        return self

    def secrets(self) -> list[str]:
        """Every secret value in this config, for log redaction."""
        found = [s.get_secret_value() for s in (self.teacher.api_key, self.wandb.api_key, *self.serve.api_keys)
                 if s is not None]
        return [s for s in found if s]

    def masked_dict(self) -> dict[str, Any]:
        """A JSON-able dump with secrets shown as '**********' (or null when unset)."""
        return self.model_dump(mode="json")


# --------------------------------------------------------------------------------------------
# Loading


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def profile_text(profile: str) -> str:
    """The YAML of a shipped profile."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return resources.files("deepcoder.configs").joinpath(f"{profile}.yaml").read_text(encoding="utf-8")


def _env_layer(env: Mapping[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """One layer per variable, so an error can name the variable that caused it."""
    layers: list[tuple[str, dict[str, Any]]] = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in _ENV_CONTROL or name == "DEEPCODER_API_KEYS":
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX):].split("__")]
        if any(not part for part in path):
            raise ConfigError(f"environment variable {name}: use DEEPCODER_<SECTION>__<FIELD>")
        raw = env[name]
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        nested: Any = value
        for part in reversed(path):
            nested = {part: nested}
        layers.append((f"environment variable {name}", nested))
    if env.get("DEEPCODER_LOG_LEVEL"):
        layers.append(("environment variable DEEPCODER_LOG_LEVEL",
                       {"logging": {"level": env["DEEPCODER_LOG_LEVEL"].upper()}}))
    wandb_env: dict[str, Any] = {}
    if env.get("WANDB_API_KEY"):
        wandb_env["api_key"] = env["WANDB_API_KEY"]
        wandb_env["mode"] = "online"
    if env.get("WANDB_MODE"):
        wandb_env["mode"] = env["WANDB_MODE"]
    if wandb_env:
        layers.append(("environment variables WANDB_*", {"wandb": wandb_env}))
    return layers


def _where(loc: tuple[Any, ...], layers: list[tuple[str, dict[str, Any]]]) -> str:
    """The last layer that set the key at loc."""
    for source, data in reversed(layers):
        node: Any = data
        for part in loc:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                break
        else:
            return source
    return "the schema defaults"


def _format_errors(exc: ValidationError, layers: list[tuple[str, dict[str, Any]]]) -> str:
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = tuple(p for p in err["loc"] if isinstance(p, (str, int)))
        key = ".".join(str(p) for p in loc) or "<top level>"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}' (set in {_where(loc, layers)})")
        else:
            lines.append(f"invalid value for '{key}' (set in {_where(loc, layers)}): {err['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_config(
    profile: str | None = None,
    config_file: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Resolve the config: defaults < profile < file < environment < overrides.

    ``profile`` and ``config_file`` fall back to ``DEEPCODER_PROFILE`` / ``DEEPCODER_CONFIG``.
    """
    env = os.environ if env is None else env
    profile = profile or env.get("DEEPCODER_PROFILE") or "default"
    layers: list[tuple[str, dict[str, Any]]] = [
        (f"profile '{profile}' (deepcoder/configs/{profile}.yaml)",
         _read_yaml(profile_text(profile), f"profile {profile}")),
    ]
    config_file = config_file or env.get("DEEPCODER_CONFIG")
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        layers.append((str(path), _read_yaml(path.read_text(encoding="utf-8"), str(path))))
    layers.extend(_env_layer(env))
    if overrides:
        layers.append(("overrides", dict(overrides)))

    merged: dict[str, Any] = {}
    for _, data in layers:
        merged = _deep_merge(merged, data)
    merged["profile"] = profile
    try:
        config = Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, layers)) from None
    if config.teacher.api_key is None:
        key = env.get(config.teacher.api_key_env)
        if key:
            config.teacher.api_key = SecretStr(key)
    return config


def config_reference() -> str:
    """Markdown reference of every key, generated from the schema (docs/configuration.md)."""
    lines = ["# Configuration reference", "",
             "Generated by `deepcoder config reference` from `deepcoder/config.py`; do not edit by hand.", "",
             "Set a key in a profile or `--config` file as `section: {field: value}`, or with the",
             "environment variable `DEEPCODER_<SECTION>__<FIELD>`. Secrets come from the environment",
             "(`GROQ_API_KEY` or the variable named by `teacher.api_key_env`, `WANDB_API_KEY`).", ""]
    for section_name, section_field in Config.model_fields.items():
        model = section_field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        lines += [f"## `{section_name}`", "", (model.__doc__ or "").strip(), "",
                  "| key | type | default | notes |", "| --- | --- | --- | --- |"]
        for name, field in model.model_fields.items():
            default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
            if section_name == "paths" and name == "cache_dir":
                default = "$XDG_CACHE_HOME/deepcoder (~/.cache/deepcoder)"
            type_name = str(field.annotation).replace("typing.", "").replace("pydantic.types.", "")
            type_name = type_name.replace("<class '", "").replace("'>", "").replace("|", "\\|")
            lines.append(f"| `{section_name}.{name}` | {type_name} | `{default!r}` | {field.description or ''} |")
        lines.append("")
    return "\n".join(lines)
