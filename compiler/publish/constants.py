"""Spec constants for publishing: the CNCF ModelPack model-spec, OCI, and inferc's own keys.

ModelPack: https://github.com/modelpack/model-spec, release v0.0.7 (docs/spec.md,
docs/config.md, docs/annotations.md; the same names in specs-go/v1). A model artifact is
an OCI image manifest whose artifactType is the model manifest type, whose config is the
model config JSON, and whose layers are the model's files. inferc writes one layer per
file, unarchived (the spec's `.raw` media types), so a layer's digest is the file's sha256.
"""

from __future__ import annotations

MODELPACK_SPEC_VERSION = "v0.0.7"

# ---- ModelPack (model-spec v0.0.7) ---------------------------------------------------
ARTIFACT_TYPE_MODEL_MANIFEST = "application/vnd.cncf.model.manifest.v1+json"
MEDIA_TYPE_MODEL_CONFIG = "application/vnd.cncf.model.config.v1+json"
MEDIA_TYPE_WEIGHT_RAW = "application/vnd.cncf.model.weight.v1.raw"
MEDIA_TYPE_WEIGHT_CONFIG_RAW = "application/vnd.cncf.model.weight.config.v1.raw"
MEDIA_TYPE_DOC_RAW = "application/vnd.cncf.model.doc.v1.raw"
ANNOTATION_FILEPATH = "org.cncf.model.filepath"
ANNOTATION_FILE_METADATA = "org.cncf.model.file.metadata+json"
ANNOTATION_MEDIATYPE_UNTESTED = "org.cncf.model.file.mediatype.untested"
MODELFS_TYPE = "layers"
TAR_TYPEFLAG_REGULAR = ord("0")  # FileMetadata.typeflag of a regular file

# ---- OCI image spec ------------------------------------------------------------------
OCI_MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
OCI_LAYOUT_FILE = "oci-layout"
OCI_LAYOUT_VERSION = "1.0.0"
OCI_ANNOTATION_CREATED = "org.opencontainers.image.created"
OCI_ANNOTATION_TITLE = "org.opencontainers.image.title"
OCI_ANNOTATION_DESCRIPTION = "org.opencontainers.image.description"
OCI_ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

# ---- inferc's manifest annotations: the artifact's key facts -------------------------
INFERC_PREFIX = "org.inferc."
ANNOTATION_MODEL = INFERC_PREFIX + "model"
ANNOTATION_TARGET = INFERC_PREFIX + "target"
ANNOTATION_QUANT = INFERC_PREFIX + "quant"
ANNOTATION_RECIPE = INFERC_PREFIX + "recipe"
ANNOTATION_FORMATS = INFERC_PREFIX + "formats"
ANNOTATION_VERSION = INFERC_PREFIX + "version"
ANNOTATION_MANIFEST_SHA256 = INFERC_PREFIX + "manifest.sha256"  # of the artifact's manifest.json
ANNOTATION_METRIC_PREFIX = INFERC_PREFIX + "metric."  # + ppl, ppl_increase_pct, kld_mean, top1, ...
ANNOTATION_EVAL_METHOD = INFERC_PREFIX + "eval.method"
ANNOTATION_MODEL_CARD = INFERC_PREFIX + "model-card"  # on the generated README.md layer: "true"

CARD_FILE = "README.md"  # the generated model card, in every publication
INDEX_FILE = "index.json"  # a registry folder's index (the OCI image layout's)
