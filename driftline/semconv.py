"""Every name of Driftline's telemetry contract, in one place.

There is no accepted OpenTelemetry convention for non-generative ML inference yet, so the
``ml.*`` names are Driftline's own (see DESIGN.md "Telemetry contract"). Established
OpenTelemetry names are used where they exist. No other module spells these as literals.
"""

from __future__ import annotations

from typing import Final

# --- established OpenTelemetry names ------------------------------------------------------
SERVICE_NAME: Final = "service.name"
SERVICE_VERSION: Final = "service.version"
DEPLOYMENT_ENVIRONMENT_NAME: Final = "deployment.environment.name"
ERROR_TYPE: Final = "error.type"

# --- attributes on every span and data point of a model -----------------------------------
ML_MODEL_NAME: Final = "ml.model.name"
ML_MODEL_VERSION: Final = "ml.model.version"
ML_MODEL_FRAMEWORK: Final = "ml.model.framework"
ML_OPERATION: Final = "ml.operation"

FRAMEWORK_SKLEARN: Final = "sklearn"
FRAMEWORK_TORCH: Final = "torch"
# Calls reported through the explicit API (driftline.monitor / driftline.observe) unless the
# application names its framework.
FRAMEWORK_CUSTOM: Final = "custom"

OPERATION_PREDICT: Final = "predict"
OPERATION_PREDICT_PROBA: Final = "predict_proba"
OPERATION_DECISION_FUNCTION: Final = "decision_function"
OPERATION_FORWARD: Final = "forward"
# Model runtimes (driftline.instrumentation.xgboost, .lightgbm, .onnxruntime): XGBoost's
# Booster.predict is OPERATION_PREDICT, its inplace_predict OPERATION_INPLACE_PREDICT;
# LightGBM's Booster.predict OPERATION_PREDICT; ONNX Runtime's InferenceSession.run OPERATION_RUN.
FRAMEWORK_XGBOOST: Final = "xgboost"
FRAMEWORK_LIGHTGBM: Final = "lightgbm"
FRAMEWORK_ONNXRUNTIME: Final = "onnxruntime"
OPERATION_INPLACE_PREDICT: Final = "inplace_predict"
OPERATION_RUN: Final = "run"

# --- span-only attributes -----------------------------------------------------------------
ML_BATCH_SIZE: Final = "ml.batch.size"
ML_FEATURE_COUNT: Final = "ml.feature.count"

# --- data point attributes ----------------------------------------------------------------
ML_FEATURE_NAME: Final = "ml.feature.name"
ML_FEATURE_CATEGORY: Final = "ml.feature.category"
ML_PREDICTION_CLASS: Final = "ml.prediction.class"
ML_DRIFT_METHOD: Final = "ml.drift.method"
ML_CLASS: Final = "ml.class"

# --- instrumentation metrics --------------------------------------------------------------
ML_PREDICT_DURATION: Final = "ml.predict.duration"
ML_PREDICT_ROWS: Final = "ml.predict.rows"
ML_FEATURE_VALUE: Final = "ml.feature.value"
ML_FEATURE_CATEGORY_METRIC: Final = "ml.feature.category"
ML_FEATURE_MISSING: Final = "ml.feature.missing"
ML_PREDICTION_VALUE: Final = "ml.prediction.value"
ML_PREDICTION_CLASS_METRIC: Final = "ml.prediction.class"
ML_PREDICTION_CONFIDENCE: Final = "ml.prediction.confidence"
ML_PREDICTION_MARGIN: Final = "ml.prediction.margin"
# 1 - top class probability, per predicted class (ML_PREDICTION_CLASS), 0 below 2**-10
# (driftline.calibration.UNCERTAINTY_FLOOR): with the profile's calibration, the processor
# estimates performance from it without labels (docs/estimation.md).
ML_PREDICTION_UNCERTAINTY: Final = "ml.prediction.uncertainty"

UNIT_SECONDS: Final = "s"
UNIT_ROWS: Final = "{row}"
UNIT_DIMENSIONLESS: Final = "1"

# --- processor outputs --------------------------------------------------------------------
ML_DRIFT_SCORE: Final = "ml.drift.score"
ML_DRIFT_DETECTED: Final = "ml.drift.detected"
ML_DRIFT_DATASET_SHARE: Final = "ml.drift.dataset.share"
ML_DRIFT_DATASET_DETECTED: Final = "ml.drift.dataset.detected"
ML_WINDOW_ROWS: Final = "ml.window.rows"
# The threshold of a column's verdict method (a significance level for ks and chisquare),
# one per column and window beside ml.drift.detected, so a chart draws it under the score.
ML_DRIFT_THRESHOLD_METRIC: Final = "ml.drift.threshold"
ML_PERFORMANCE_PREFIX: Final = "ml.performance."

DRIFT_METHOD_PSI: Final = "psi"
DRIFT_METHOD_WASSERSTEIN: Final = "wasserstein"
DRIFT_METHOD_JENSENSHANNON: Final = "jensenshannon"
DRIFT_METHOD_KL: Final = "kl"
DRIFT_METHOD_HELLINGER: Final = "hellinger"
DRIFT_METHOD_KS: Final = "ks"
DRIFT_METHOD_CHISQUARE: Final = "chisquare"
DRIFT_METHOD_TOTAL_VARIATION: Final = "total_variation"

# --- log record events --------------------------------------------------------------------
EVENT_PREDICTION: Final = "ml.prediction"
EVENT_GROUND_TRUTH: Final = "ml.ground_truth"
EVENT_DRIFT_ALERT: Final = "ml.drift.alert"
ML_PREDICTION_ID: Final = "ml.prediction.id"
# An ml.prediction record (one row): the model's attributes, ML_PREDICTION_ID, and its output
# as ML_PREDICTION_LABEL (classifiers: the predicted class as text) with ML_PREDICTION_SCORES
# (class scores, an array of doubles, for the classes in ML_PREDICTION_CLASSES, an array of
# strings), or ML_PREDICTION_VALUE (regressors, a double). The body is a map of the row's
# inputs, feature name -> value (size-capped).
ML_PREDICTION_LABEL: Final = "ml.prediction.label"
ML_PREDICTION_SCORES: Final = "ml.prediction.scores"
ML_PREDICTION_CLASSES: Final = "ml.prediction.classes"
ML_PREDICTION_VALUE_ATTRIBUTE: Final = "ml.prediction.value"
# Counter of ml.prediction records the app did not send, by ERROR_TYPE: over the per-second
# cap (DROP_REASON_RATE_LIMITED) or lost with a call the full recorder queue dropped
# (DROP_REASON_QUEUE_FULL). Model attributes as on every point.
ML_PREDICTION_RECORDS_DROPPED: Final = "ml.prediction.records.dropped"
DROP_REASON_RATE_LIMITED: Final = "rate_limited"
DROP_REASON_QUEUE_FULL: Final = "queue_full"
UNIT_RECORDS: Final = "{record}"
# An ml.ground_truth record: ML_PREDICTION_ID and the true ML_GROUND_TRUTH_LABEL (text) or
# ML_GROUND_TRUTH_VALUE (a double); ml.model.name / ml.model.version when the sender knows them.
ML_GROUND_TRUTH_LABEL: Final = "ml.ground_truth.label"
ML_GROUND_TRUTH_VALUE: Final = "ml.ground_truth.value"
# ml.performance.* gauges: per class where it applies.
ML_CLASS: Final = "ml.class"
# ml.performance.* gauges, one set per model and window of prediction time (ml_performance).
# Ratios (accuracy, precision, recall, f1, roc_auc, r2) and errors (mae, rmse) in the label's
# unit; ML_PERFORMANCE_LABELS counts the joined labels (per true class with ML_CLASS).
ML_PERFORMANCE_ACCURACY: Final = ML_PERFORMANCE_PREFIX + "accuracy"
ML_PERFORMANCE_PRECISION: Final = ML_PERFORMANCE_PREFIX + "precision"
ML_PERFORMANCE_RECALL: Final = ML_PERFORMANCE_PREFIX + "recall"
ML_PERFORMANCE_F1: Final = ML_PERFORMANCE_PREFIX + "f1"
ML_PERFORMANCE_ROC_AUC: Final = ML_PERFORMANCE_PREFIX + "roc_auc"
ML_PERFORMANCE_MAE: Final = ML_PERFORMANCE_PREFIX + "mae"
ML_PERFORMANCE_RMSE: Final = ML_PERFORMANCE_PREFIX + "rmse"
ML_PERFORMANCE_R2: Final = ML_PERFORMANCE_PREFIX + "r2"
ML_PERFORMANCE_LABELS: Final = ML_PERFORMANCE_PREFIX + "labels"
# Seconds from a window's end to the evaluation that joined its latest labels (ml_performance;
# unit UNIT_SECONDS): how late the labels of a window come (0 when they came within it).
ML_PERFORMANCE_LABELS_LAG: Final = ML_PERFORMANCE_LABELS + ".lag"
UNIT_LABELS: Final = "{label}"
# Estimated (without labels, from calibrated confidence; docs/estimation.md) by ml_drift:
# ML_PERFORMANCE_ESTIMATED_PREFIX + metric (accuracy; precision, recall, f1, roc_auc of a
# binary model's positive class), and the band where the realised value falls with
# probability ml_drift::estimation::level if the calibration holds: the same name + ".lower"
# and + ".upper". An estimate's ml.performance.alert names the estimated gauge.
ML_PERFORMANCE_ESTIMATED_PREFIX: Final = ML_PERFORMANCE_PREFIX + "estimated."
ML_PERFORMANCE_LOWER_SUFFIX: Final = ".lower"
ML_PERFORMANCE_UPPER_SUFFIX: Final = ".upper"
# How a classification gauge is averaged: "macro" (unweighted mean over classes), "class"
# (one class, named by ML_CLASS) or "binary" (two-class ROC AUC; ML_CLASS = the positive class).
ML_PERFORMANCE_AVERAGE: Final = "ml.performance.average"
AVERAGE_MACRO: Final = "macro"
AVERAGE_CLASS: Final = "class"
AVERAGE_BINARY: Final = "binary"
# An ml.performance.alert record: a window's metric past its threshold (the model's
# attributes, ML_WINDOW_START/END, and these).
EVENT_PERFORMANCE_ALERT: Final = "ml.performance.alert"
ML_PERFORMANCE_METRIC: Final = "ml.performance.metric"  # e.g. "ml.performance.accuracy"
ML_PERFORMANCE_VALUE_ATTRIBUTE: Final = "ml.performance.value"
ML_PERFORMANCE_THRESHOLD: Final = "ml.performance.threshold"
ML_PERFORMANCE_LABEL_COUNT: Final = "ml.performance.label_count"
PERFORMANCE_SCOPE: Final = "driftline.processor.ml_performance"
# Attributes of an ml.drift.alert record (besides the model's and ml.feature.name).
ML_DRIFT_SUBJECT: Final = "ml.drift.subject"  # "column" or "dataset"
DRIFT_SUBJECT_COLUMN: Final = "column"
DRIFT_SUBJECT_DATASET: Final = "dataset"
ML_DRIFT_SCORE_ATTRIBUTE: Final = "ml.drift.score"
ML_DRIFT_THRESHOLD: Final = "ml.drift.threshold"
ML_DRIFT_P_VALUE: Final = "ml.drift.p_value"
ML_DRIFT_DATASET_SHARE_ATTRIBUTE: Final = "ml.drift.dataset.share"
ML_WINDOW_START: Final = "ml.window.start"  # Unix nanoseconds
ML_WINDOW_END: Final = "ml.window.end"

# --- instrumentation scopes ---------------------------------------------------------------
SCOPE_PREFIX: Final = "driftline.instrumentation."
# Calls reported through the explicit API (driftline.monitor, driftline.observe).
SCOPE_EXPLICIT: Final = SCOPE_PREFIX + "explicit"
PROCESSOR_SCOPE: Final = "driftline.processor.ml_drift"

# --- cardinality --------------------------------------------------------------------------
OVERFLOW_VALUE: Final = "__other__"
# Counter of values folded into OVERFLOW_VALUE; its attribute names the capped attribute.
ML_CARDINALITY_OVERFLOW: Final = "ml.cardinality.overflow"
ML_CARDINALITY_ATTRIBUTE: Final = "ml.cardinality.attribute"
UNIT_VALUES: Final = "{value}"

# --- environment variables ----------------------------------------------------------------
ENV_MODEL_NAME: Final = "DRIFTLINE_MODEL_NAME"
ENV_MODEL_VERSION: Final = "DRIFTLINE_MODEL_VERSION"
# Overrides how PyTorch outputs are read: "classification" or "regression".
ENV_TORCH_TASK: Final = "DRIFTLINE_TORCH_TASK"

# --- feature names of projected inputs (images, embeddings, sequences) ---------------------
# Wide inputs are monitored as proj0..proj{k-1} (a seeded random projection) and l2_norm.
FEATURE_PROJECTION_PREFIX: Final = "proj"
FEATURE_L2_NORM: Final = "l2_norm"
# A row's reconstruction error by the profile's PCA of the numeric features, monitored as
# one more numeric feature (driftline.multivariate): multivariate drift.
FEATURE_RECONSTRUCTION_ERROR: Final = "ml.multivariate.reconstruction_error"

# --- derived columns: numbers computed from a logged column in the recorder thread ---------
# A derived column is named "<column><DERIVED_SEPARATOR><derivation>": review.chars,
# embedding.proj0, embedding.l2_norm.
DERIVED_SEPARATOR: Final = "."
# Descriptors of a text column (driftline/text.py).
TEXT_CHARS: Final = "chars"
TEXT_TOKENS: Final = "tokens"
TEXT_OOV_SHARE: Final = "oov_share"
TEXT_EMPTY: Final = "empty"
TEXT_NON_ASCII_SHARE: Final = "non_ascii_share"

# --- reference profile column names for predictions ---------------------------------------
# A profile names its prediction columns after the metric that carries them in production,
# so the processor pairs a metric stream with its reference column without a mapping table.
PROFILE_COLUMN_PREDICTION_CLASS: Final = ML_PREDICTION_CLASS_METRIC
PROFILE_COLUMN_PREDICTION_CONFIDENCE: Final = ML_PREDICTION_CONFIDENCE

# --- resource attributes that identify a Prometheus target (job, instance) -----------------
SERVICE_NAMESPACE: Final = "service.namespace"
SERVICE_INSTANCE_ID: Final = "service.instance.id"

# --- the processor's own telemetry (processor/self_telemetry.py) ---------------------------
# Every field of a component's stats() becomes the metric PROCESSOR_METRIC_PREFIX + field.
PROCESSOR_METRIC_PREFIX: Final = "driftline.processor."
# Sharded processors (docs/scale.md): first points of cumulative streams that had been sent
# to another processor, and the model windows left unjudged because of it.
PROCESSOR_SPLIT_STREAMS: Final = PROCESSOR_METRIC_PREFIX + "split_streams"
PROCESSOR_SPLIT_WINDOWS: Final = PROCESSOR_METRIC_PREFIX + "split_windows"
PROCESSOR_SERVICE_NAME: Final = "driftline-processor"
PROCESSOR_SELF_TELEMETRY_SCOPE: Final = "driftline.processor.self_telemetry"
DRIFTLINE_COMPONENT_KIND: Final = "driftline.component.kind"
DRIFTLINE_COMPONENT_ID: Final = "driftline.component.id"
DRIFTLINE_PIPELINE: Final = "driftline.pipeline"
