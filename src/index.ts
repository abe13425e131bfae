// runchart: an agent runtime in which every run is an XState v5 actor. The public surface, name by name.
export { createRuntime, type Runtime, type RuntimeOptions, type RunHandle, type RunActor, type ReviewOptions, type RunStreamEvent } from './runtime.js';
export { loadConfig, parseConfig, settingsFrom, defaultRules, RunchartConfig, PolicyRule, type RunchartConfigInput } from './config.js';
export { RunchartError, isRunchartError, toRunchartErrorData, checked, RunchartErrorData, ErrorKind, ErrorLayer } from './errors.js';

export { runMachine, type RunMachine } from '../machines/run/machine.js';
export { runSetup, type TelemetryEvent, type TelemetryInput } from '../machines/run/setup.js';
export { toRunResult, statusOf, type RunResult } from '../machines/run/result.js';
export type {
  RunContext,
  RunInput,
  RunSettings,
  RunEvent,
  ModelStepInput,
  ToolExecutionInput,
  ApprovalWaitInput,
  BackgroundInput,
  CallRecord,
  CallOutcome,
  PlannedCall,
  AcceptedRequest,
  RunUsage,
} from '../machines/run/types.js';

export { fromLayerCall, type LayerCallArguments, type LayerCallLogic, type LayerCallOptions } from '../actors/layer-call.js';
export { ingressActor, type IngressOptions } from '../actors/ingress.actor.js';
export { policyActor } from '../actors/policy.actor.js';
export { memoryActor } from '../actors/memory.actor.js';
export { modelActor } from '../actors/model.actor.js';
export { executionActor } from '../actors/execution.actor.js';
export { backgroundActor } from '../actors/background.actor.js';
export { approvalActor } from '../actors/approval.actor.js';
export { telemetryActor, type TelemetrySnapshot } from '../actors/telemetry.actor.js';
export { runSupervisor, type SupervisorEvent, type SupervisorSnapshot } from '../actors/supervisor.actor.js';

export { RunRequest, parseRunRequest, parseTraceparent, traceContextFor } from './ingress/request.js';
export { createHttpIngress, hashApiKey, generateApiKey, type HttpIngress, type HttpIngressOptions, type HttpListener, type HttpErrorKind, type HttpCaller } from './ingress/http.js';
export { PolicyStage, PolicyVerdict, PolicyRequest, PolicyDecision, DecisionRecord, type PolicyLayer } from './policy/contract.js';
export { createRulesPolicy } from './policy/rules.js';
export { MemoryScope, RecallQuery, RecallResult, MemoryItem, MemoryRecord, HistoryTurn, type MemoryLayer } from './memory/contract.js';
export { createInMemoryMemory } from './memory/in-memory.js';
export { Effects, PinnedCapability, type Capability, type CapabilityContext, type CatalogLayer } from './catalog/contract.js';
export { defineCapability, type CapabilityDefinition } from './catalog/capability.js';
export { createCatalog, pinCapabilities, toolNameFor } from './catalog/registry.js';
export { mathCapabilities } from './catalog/math.js';
export { ExecuteRequest, ExecuteResult, ToolError, JournalEntry, hashArguments, type ExecutionGateway, type ExecutionJournal } from './execution/contract.js';
export { createGateway, createMemoryJournal, type GatewayOptions } from './execution/gateway.js';
export type { JournalEntries } from './execution/journal-entries.js';
export { mcpCapabilities, McpSource, McpStdioSource, McpHttpSource, McpCapabilitiesOptions, type McpCapabilities } from './execution/mcp.js';
export { ChatMessage, ToolCall, ToolSpec, ModelRequest, ModelResponse, Usage, type ModelAdapter, type ModelDelta, type ModelStepOptions } from './models/contract.js';
export { demoModel } from './models/demo.js';
export { openaiModel, modelFromEnvironment, type OpenAIModelOptions } from './models/openai.js';
export { RunIdentity, TelemetryMark, noopTelemetry, combineTelemetry, type TelemetryLayer, type RunTelemetry } from './telemetry/contract.js';
export { createTelemetry, type CreateTelemetryOptions } from './telemetry/create.js';
export { otelTelemetry, type OtelTelemetryOptions, type TelemetryTracer } from './telemetry/otel.js';
export { pinoTelemetry, type EventLogger } from './telemetry/pino.js';
export { BackgroundTask, type BackgroundQueue, type BackgroundHandler } from './background/contract.js';
export { createMemoryQueue, type QueueOptions } from './background/queue.js';
export { PersistedRun, RunStatus, RunSummary, SCHEMA_VERSION, type RunStore } from './store/contract.js';
export { createInMemoryRunStore } from './store/in-memory.js';
export { readableRun } from './store/migrate.js';
export { createRunRecorder, readRecording, parseRecording, RecordedEvent, type RunRecorder, type RunRecorderOptions } from './inspect/recorder.js';
export { enumerateRunPaths, sampleEventsFor, stateKey, type RunPath, type PathStep, type PathOptions } from './verification/paths.js';
export { checkPolicyCoverage, checkPath, type CoverageReport, type CoverageViolation, type CoverageRule } from './verification/coverage.js';
