package wire

import "encoding/json"

// ModelStatus is what a scorer says of one model it serves.
type ModelStatus struct {
	Model         string  `json:"model"`
	Version       int     `json:"version,omitempty"`
	Digest        string  `json:"digest,omitempty"`
	CanaryVersion int     `json:"canary_version,omitempty"`
	Traffic       float64 `json:"traffic,omitempty"`
	Mode          string  `json:"mode,omitempty"`
	Blend         float64 `json:"blend"`
	Swaps         int64   `json:"swaps"`
	Destroyed     int64   `json:"sessions_destroyed"`
	Breaker       string  `json:"breaker"`
	CanaryBreaker string  `json:"canary_breaker,omitempty"`
	Fallback      bool    `json:"has_fallback"`
	Ready         bool    `json:"ready"`
	Sync          any     `json:"sync,omitempty"`
}

// ScoreRequest is one row in "features" or many in "rows". Key routes sticky A/B
// traffic; BudgetMS overrides the scorer's latency budget; Fallback false
// refuses an answer from the rules (503 instead).
type ScoreRequest struct {
	Model    string      `json:"model,omitempty"`
	Features []float64   `json:"features,omitempty"`
	Rows     [][]float64 `json:"rows,omitempty"`
	Key      string      `json:"key,omitempty"`
	BudgetMS *float64    `json:"budget_ms,omitempty"`
	Fallback *bool       `json:"fallback,omitempty"`
}

// ScoreResponse answers a score request; Score for one row, Scores for many.
type ScoreResponse struct {
	Model   string    `json:"model"`
	Score   *float32  `json:"score,omitempty"`
	Scores  []float32 `json:"scores,omitempty"`
	Source  string    `json:"source"`
	Version int       `json:"version,omitempty"`
	Arm     string    `json:"arm"`
	Reason  string    `json:"reason,omitempty"`
	// RequestID names the answer for POST /v1/feedback (model answers only).
	RequestID string `json:"request_id,omitempty"`
	// Shape is the shape of Scores when a row yields more than one value
	// ([rows, values per row]).
	Shape []int64 `json:"shape,omitempty"`
	// Outputs, for a model of several outputs, are all of them by name, each
	// flat (row-major) in the shape Shapes gives.
	Outputs map[string]any     `json:"outputs,omitempty"`
	Shapes  map[string][]int64 `json:"shapes,omitempty"`
}

// FeedbackRequest joins real outcomes to an earlier answer: "outcome" for a
// one-row request, "outcomes" (one per row) for many.
type FeedbackRequest struct {
	RequestID string    `json:"request_id"`
	Outcome   *float64  `json:"outcome,omitempty"`
	Outcomes  []float64 `json:"outcomes,omitempty"`
}

// OIPTensor is a tensor's metadata.
type OIPTensor struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// OIPModelMetadata is GET /v2/models/{m}.
type OIPModelMetadata struct {
	Name     string      `json:"name"`
	Versions []string    `json:"versions,omitempty"`
	Platform string      `json:"platform"`
	Inputs   []OIPTensor `json:"inputs"`
	Outputs  []OIPTensor `json:"outputs"`
}

// RepositoryModel is one entry of Triton's model repository index: a version
// of a model this scorer serves (or the model, with no version, when none is
// loaded), its state and why.
type RepositoryModel struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	// State is READY or UNAVAILABLE.
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// OIPInferRequest is POST /v2/models/{m}/infer. Of the parameters the
// protocol allows, the scorer reads the ones its types name and ignores the
// rest; one it reads must have the type it names.
type OIPInferRequest struct {
	ID         string               `json:"id,omitempty"`
	Parameters OIPRequestParameters `json:"parameters,omitzero"`
	Inputs     []OIPInputTensor     `json:"inputs"`
	Outputs    []OIPRequestedOutput `json:"outputs,omitempty"`
}

// OIPRequestParameters are the request parameters the scorer reads.
type OIPRequestParameters struct {
	// Key assigns the request to an arm, as /v1/score's key does.
	Key string `json:"key,omitempty"`
	// BinaryDataOutput asks for every output as binary data (the binary tensor
	// extension), for requests that name no outputs.
	BinaryDataOutput bool `json:"binary_data_output,omitempty"`
	// Timeout is the request's latency budget in microseconds, as Triton's
	// schedule-policy extension (and tritonclient's timeout argument) sends it;
	// 0 or none is the scorer's budget.
	Timeout *int64 `json:"timeout,omitempty"`
	// Fallback false refuses an answer from the rules: 503 instead.
	Fallback *bool `json:"fallback,omitempty"`
}

// OIPTensorParameters are the tensor parameters of the binary tensor
// extension.
type OIPTensorParameters struct {
	// BinaryDataSize is the length of the tensor's data after the JSON header.
	BinaryDataSize *int64 `json:"binary_data_size,omitempty"`
	// BinaryData, on a requested output, asks for it as binary data.
	BinaryData bool `json:"binary_data,omitempty"`
}

// OIPRequestedOutput names an output a request wants.
type OIPRequestedOutput struct {
	Name       string              `json:"name"`
	Parameters OIPTensorParameters `json:"parameters,omitzero"`
}

// OIPInputTensor carries data flat (row-major) or nested.
type OIPInputTensor struct {
	Name       string              `json:"name"`
	Shape      []int64             `json:"shape"`
	Datatype   string              `json:"datatype"`
	Parameters OIPTensorParameters `json:"parameters,omitzero"`
	Data       json.RawMessage     `json:"data"`
}

// OIPOutputTensor is one output of an inference response.
type OIPOutputTensor struct {
	Name       string               `json:"name"`
	Shape      []int64              `json:"shape"`
	Datatype   string               `json:"datatype"`
	Parameters *OIPTensorParameters `json:"parameters,omitempty"`
	// Data is []float32 for FP32, and the Go slice of the datatype for the
	// others.
	Data any `json:"data,omitempty"`
}

// OIPInferResponse answers an inference request. Parameters say where the scores
// came from, as /v1/score does.
type OIPInferResponse struct {
	ModelName    string                `json:"model_name"`
	ModelVersion string                `json:"model_version,omitempty"`
	ID           string                `json:"id,omitempty"`
	Parameters   OIPResponseParameters `json:"parameters"`
	Outputs      []OIPOutputTensor     `json:"outputs"`
}

// OIPResponseParameters say which arm answered and from what: source "model"
// or "fallback", with the fallback's reason.
type OIPResponseParameters struct {
	Arm    string `json:"arm"`
	Reason string `json:"reason,omitempty"`
	Source string `json:"source"`
	// RequestID names a model answer for POST /v1/feedback, as on /v1/score.
	RequestID string `json:"request_id,omitempty"`
}
