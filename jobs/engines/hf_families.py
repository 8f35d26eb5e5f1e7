"""The OCR model families the transformers engine knows: one row each, in one table.

A family row says everything the engine needs to drive a model the way its checkpoint was trained:
which auto class loads it, the prompt of each task (from the model card), how the prompt reaches the
model (chat template, plain text, processor-built, decoder start token...), generation defaults sized
for what it reads (a text line or a page), how raw output becomes text, boxes and fields, and which
extra Python modules it needs. A model whose family is not here is refused at submit, naming the
ones that are: guessing a prompt makes a model emit plausible noise, not an error.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

from jobs.errors import EngineError

# How the prompt reaches the model (``Family.style``).
CHAT = "chat"  # the processor's chat template around an image and the task text (plain text if it has none)
PLAIN = "plain"  # the task text as is, holding the image token itself (or a task token the processor expands)
IMAGE_ONLY = "image-only"  # a chat turn with the image alone, no instruction (LightOnOCR)
PROCESSOR = "processor"  # the processor builds the prompt from the image (GOT-OCR2; ``format=True`` for markdown)
DECODER_PROMPT = "decoder-prompt"  # the task start token as the decoder's first tokens (Donut)
NONE = "none"  # image in, text out (TrOCR, Nougat)
INFER = "infer"  # the model's own remote-code ``infer()`` (DeepSeek-OCR v1)

OLMOCR_PROMPT = (
    "Attached is one page of a document that you must process. Just return the plain text representation of "
    "this document as if you were reading it naturally. Convert equations to LateX and tables to HTML.\n"
    "If there are any figures or charts, label them with the following markdown syntax "
    "![Alt text describing the contents of the figure](page_startx_starty_width_height.png)\n"
    "Return your output as markdown, with a front matter section on top specifying values for the "
    "primary_language, is_rotation_valid, rotation_correction, is_table, and is_diagram parameters."
)
DEEPSEEK_TASKS = {
    "ocr": "<image>\nFree OCR.",
    "markdown": "<image>\nConvert the document to markdown.",
    "grounding": "<image>\n<|grounding|>Convert the document to markdown.",
}
DONUT_TASK_TOKENS = ("<s_cord-v2>", "<s_rvlcdip>", "<s_synthdog>")  # first one the tokenizer knows wins
PAGE = 4096  # new tokens a page model may need; line models stop far sooner


@dataclass(frozen=True)
class Family:
    name: str
    label: str
    model_types: tuple[str, ...]
    tasks: dict[str, str]
    style: str
    max_new_tokens: int = PAGE
    default_task: str = "ocr"
    auto_class: str = "AutoModelForImageTextToText"
    stop_strings: tuple[str, ...] = ()
    num_beams: int = 1
    keep_special: bool = False  # decode special tokens too: the post-processor reads them (<loc_N>, <|det|>...)
    post: str = "text"  # hf_post's post-processor
    needs: tuple[str, ...] = ()  # Python modules its processor or model imports
    remote_code: bool = False  # runs only with trust_remote_code
    encoder_decoder: bool = False
    processor_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to every processor call
    text_first: bool = False  # chat turn as text then image (olmOCR's order), not image then text
    longest_side: int = 0  # resize each image to this longest side first (the page size it was trained on)

    def prompt(self, options: dict[str, Any]) -> str:
        """The job's prompt: ``prompt`` if given, else the prompt of ``task`` (validated by :func:`check_task`)."""
        if options.get("prompt") not in (None, ""):
            return str(options["prompt"])
        return self.tasks[self.task(options)]

    def task(self, options: dict[str, Any]) -> str:
        return str(options.get("task") or self.default_task)


VED = ("vision-encoder-decoder",)
FAMILIES: tuple[Family, ...] = (
    Family("trocr", "TrOCR", VED, {"ocr": ""}, NONE, max_new_tokens=64, encoder_decoder=True),
    Family(
        "donut",
        "Donut",
        VED,
        {"ocr": DONUT_TASK_TOKENS[0]},
        DECODER_PROMPT,
        max_new_tokens=768,
        keep_special=True,
        post="donut",
        encoder_decoder=True,
    ),
    Family(
        "nougat",
        "Nougat",
        VED,
        {"markdown": ""},
        NONE,
        default_task="markdown",
        post="nougat",
        encoder_decoder=True,
    ),
    Family(
        "got_ocr2",
        "GOT-OCR2",
        ("got_ocr2",),
        {"ocr": "OCR: ", "markdown": "OCR with format: "},
        PROCESSOR,
        stop_strings=("<|im_end|>",),
    ),
    Family(
        "florence2",
        "Florence-2",
        ("florence2",),
        {"ocr": "<OCR>", "grounding": "<OCR_WITH_REGION>"},
        PLAIN,
        max_new_tokens=1024,
        keep_special=True,
        post="florence",
        encoder_decoder=True,
    ),
    Family(
        "deepseek_ocr2",
        "DeepSeek-OCR-2",
        ("deepseek_ocr2",),
        DEEPSEEK_TASKS,
        PLAIN,
        keep_special=True,
        post="grounding",
    ),
    Family(
        "deepseek_ocr",
        "DeepSeek-OCR",
        ("deepseek_vl_v2", "deepseek_ocr"),
        DEEPSEEK_TASKS,
        INFER,
        auto_class="AutoModel",
        post="grounding",
        remote_code=True,
    ),
    Family(
        "paddleocr_vl",
        "PaddleOCR-VL",
        ("paddleocr_vl",),
        {
            "ocr": "OCR:",
            "table": "Table Recognition:",
            "formula": "Formula Recognition:",
            "chart": "Chart Recognition:",
        },
        CHAT,
    ),
    Family(
        "glm_ocr",
        "GLM-OCR",
        ("glm_ocr",),
        {"ocr": "Text Recognition:", "formula": "Formula Recognition:", "table": "Table Recognition:"},
        CHAT,
        needs=("torchvision",),
    ),
    Family("lighton_ocr", "LightOnOCR", ("lighton_ocr",), {"ocr": ""}, IMAGE_ONLY),
    Family(
        "qwen_vl",
        "Qwen2.5-VL / Qwen3-VL (olmOCR)",
        ("qwen2_5_vl", "qwen3_vl"),
        {"ocr": OLMOCR_PROMPT, "markdown": OLMOCR_PROMPT},
        CHAT,
        post="front-matter",
        needs=("torchvision",),
        text_first=True,
        longest_side=1288,  # olmOCR-2 renders pages at 1288 px on the longest side
    ),
    Family(
        "unlimited_ocr",
        "Unlimited-OCR",
        ("unlimited_ocr",),
        {"ocr": "<image>document parsing."},
        PLAIN,
        keep_special=True,
        post="detections",
        needs=("torchvision",),
    ),
    Family(
        "qianfan_ocr",
        "Qianfan-OCR",
        ("qianfan_ocr",),
        {"ocr": "Parse this document to Markdown.", "markdown": "Parse this document to Markdown."},
        CHAT,
        processor_kwargs={"max_patches": 6},  # InternVL tiling: 12 tiles would turn a line into 3,000 tokens
    ),
    Family(
        "minicpm_ocr",
        "MiniCPM-OCR",
        ("minicpm_ocr",),
        # The prompt table of infosave/MiniCPM-OCR-1.0-cmf (a packaging of OpenBMB's weights; their own card
        # was not reachable from here): plain text, paragraphs, titles and pages read "Text Recognition:".
        {"ocr": "Text Recognition:", "table": "Table Recognition:"},
        CHAT,
        needs=("torchvision",),
    ),
)
BY_NAME = {f.name: f for f in FAMILIES}
#: Any other image-text-to-text model, only with the job's own prompt (never listed as supported).
GENERIC = Family("generic", "image-text-to-text", (), {"ocr": ""}, CHAT, max_new_tokens=512)


def supported() -> str:
    """The families, for messages: 'TrOCR, Donut, ...'."""
    return ", ".join(f.label for f in FAMILIES)


def detect(config: Any, classes: set[str] | None = None) -> Family | None:
    """The family of a model from its config (and the names of its processor/tokenizer classes), or None.

    A vision-encoder-decoder is told apart by what it is built from: Nougat by its processor or
    tokenizer, Donut by a donut-swin encoder with an mBART decoder, anything else is read as TrOCR."""
    classes = classes or set()
    model_type = str(getattr(config, "model_type", "") or "")
    if model_type == VED[0]:
        if classes & {"NougatProcessor", "NougatTokenizer", "NougatImageProcessor", "NougatImageProcessorPil"}:
            return BY_NAME["nougat"]
        enc = getattr(getattr(config, "encoder", None), "model_type", "")
        dec = getattr(getattr(config, "decoder", None), "model_type", "")
        if "DonutProcessor" in classes or (enc == "donut-swin" and dec == "mbart"):
            return BY_NAME["donut"]
        return BY_NAME["trocr"]
    archs = " ".join(getattr(config, "architectures", None) or [])
    if "DeepseekOCR" in archs and model_type not in ("deepseek_ocr2",):
        return BY_NAME["deepseek_ocr"]
    return next((f for f in FAMILIES if f.model_types != VED and model_type in f.model_types), None)


def family_for(config: Any, classes: set[str] | None = None, options: dict[str, Any] | None = None) -> Family:
    """Like :func:`detect`, but a model of no known family is an EngineError that names the known ones.

    One way out: an image-text-to-text model run with an explicit ``prompt`` (the user chose it) is driven
    as a generic chat model."""
    fam = detect(config, classes)
    if fam is not None:
        return fam
    kind = getattr(config, "model_type", None) or "unknown"
    if (options or {}).get("prompt") and _image_text_to_text(kind):
        return GENERIC
    if kind.startswith("pp_ocr"):  # PP-OCR detection or recognition: the ppocr engine runs the pair
        raise EngineError(
            f"model type {kind!r} is PP-OCR, which the ppocr engine runs, not the transformers engine: "
            "--engine ppocr --engine-option det_model=DET_FOLDER --engine-option rec_model=REC_FOLDER"
        )
    raise EngineError(
        f"model type {kind!r} is not an OCR family the transformers engine knows; supported: {supported()} "
        "(another image-text-to-text model runs only with its prompt given: --engine-option prompt=...)"
    )


def _image_text_to_text(model_type: str) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES


def check(fam: Family, options: dict[str, Any]) -> None:
    """Refuse at submit what this family cannot run: an unknown task, a missing module, remote code not allowed."""
    task = options.get("task")
    if task not in (None, "") and task not in fam.tasks:
        raise EngineError(f"{fam.label} has no task {task!r}; its tasks: {', '.join(fam.tasks)}")
    prompt = options.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise EngineError(f"engine option prompt must be text, got {prompt!r}")
    if prompt and fam.style == NONE:
        raise EngineError(f"{fam.label} reads the image alone and takes no prompt: submit without --prompt")
    for module in fam.needs:
        if importlib.util.find_spec(module) is None:
            raise EngineError(
                f"{fam.label} needs the Python module {module!r}, which is not installed: "
                f"install it (`pip install {module}`, the build matching your torch) and submit again"
            )
    if fam.remote_code and not options.get("trust_remote_code"):
        raise EngineError(
            f"{fam.label} runs code that ships with the model: submit with --trust-remote-code if you trust its source"
        )


def donut_task_token(tokenizer: Any, asked: str) -> str:
    """Donut's decoder prompt: the asked task token if the tokenizer knows it, else the first known one."""
    vocab = tokenizer.get_vocab()
    if asked in vocab:
        return asked
    for token in DONUT_TASK_TOKENS:
        if token in vocab:
            return token
    starts = sorted(t for t in vocab if t.startswith("<s_") and t.endswith(">"))
    return starts[0] if starts else asked
