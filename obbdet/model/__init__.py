"""The oriented-box detector: network (``detector``), anchors and labeling (``anchors``), box/angle encoding
(``coder``), criterion (``loss``) and decoding + rotated NMS (``postprocess``)."""
from obbdet.model.anchors import AnchorGenerator, AnchorTargets, label_anchors
from obbdet.model.coder import decode_xywha, encode_xywha
from obbdet.model.detector import MODEL_VARIANTS, Detector, PretrainedWeightsError, build_detector
from obbdet.model.loss import LOSS_NAMES, OBBCriterion
from obbdet.model.postprocess import PostProcessor

__all__ = ["AnchorGenerator", "AnchorTargets", "label_anchors", "decode_xywha", "encode_xywha", "MODEL_VARIANTS",
           "Detector", "PretrainedWeightsError", "build_detector", "LOSS_NAMES", "OBBCriterion", "PostProcessor"]
