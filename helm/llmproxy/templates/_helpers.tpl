{{/*
Named templates. Those named llmproxy.sidecar.*, llmproxy.podAnnotations and
llmproxy.configmap are the public API for an app chart that lists llmproxy as
a dependency; the rest are this chart's own helpers.

Every public template takes the root context (`.`) of the chart that calls it
and first switches to this chart's scope:

    $s := get (.Subcharts | default dict) "llmproxy" | default .

In an app chart, .Subcharts.llmproxy (Helm >= 3.7) is this chart's own scope:
its .Values with the app chart's `llmproxy:` overrides merged over our
defaults, its .Chart (so the image tag defaults to OUR appVersion) and the
shared .Release. In this chart's own templates there is no such subchart and
`.` is already the right scope. So the helpers below always see llmproxy's
values, whoever calls them. (Hence: list the dependency as `llmproxy`, with
no alias, directly in the chart whose templates include these.)
*/}}

{{/* ---------------- public: for an app chart's pod spec ---------------- */}}

{{/* The sidecar as an entry of `containers:` (renders nothing when sidecar.native). */}}
{{- define "llmproxy.sidecar.containers" -}}
{{- $s := get (.Subcharts | default dict) "llmproxy" | default . -}}
{{- if not $s.Values.sidecar.native -}}
- {{ include "llmproxy.container" $s | nindent 2 | trim }}
{{- end -}}
{{- end -}}

{{/* The sidecar as an entry of `initContainers:` (renders only when sidecar.native). */}}
{{- define "llmproxy.sidecar.initContainers" -}}
{{- $s := get (.Subcharts | default dict) "llmproxy" | default . -}}
{{- if $s.Values.sidecar.native -}}
- {{ include "llmproxy.container" $s | nindent 2 | trim }}
  # A native sidecar: started before the app containers, stopped after them.
  restartPolicy: Always
{{- end -}}
{{- end -}}

{{/* Entries of the pod's `volumes:`: the config directory and extraVolumes. */}}
{{- define "llmproxy.sidecar.volumes" -}}
{{- $s := get (.Subcharts | default dict) "llmproxy" | default . -}}
- name: llmproxy-config
  configMap:
    name: {{ include "llmproxy.fullname" $s }}
{{- with $s.Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Entries of the pod template's `metadata.annotations:` (may render nothing). */}}
{{- define "llmproxy.podAnnotations" -}}
{{- $s := get (.Subcharts | default dict) "llmproxy" | default . -}}
{{- include "llmproxy.podAnnotationLines" $s | trim -}}
{{- end -}}

{{/* The ConfigMap manifest (rendered by templates/configmap.yaml unless configMap.create is false). */}}
{{- define "llmproxy.configmap" -}}
{{- $s := get (.Subcharts | default dict) "llmproxy" | default . -}}
{{- if not (and $s.Values.config.providers $s.Values.config.models) -}}
{{- fail "llmproxy: set `config` (providers and models: the llmproxy YAML itself); see the chart's examples/" -}}
{{- end -}}
{{- include "llmproxy.noLiteralSecrets" $s.Values.config -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "llmproxy.fullname" $s }}
  labels:
    {{- include "llmproxy.labels" $s | nindent 4 }}
data:
  # No secrets here: the config names them as ${VAR}, set from a Secret.
  llmproxy.yaml: |
    {{- toYaml ($s.Values.config | default dict) | nindent 4 }}
{{- end -}}

{{/* ---------------- this chart's helpers: take llmproxy's own scope ---------------- */}}

{{- define "llmproxy.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "llmproxy.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "llmproxy.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "llmproxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llmproxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "llmproxy.labels" -}}
{{ include "llmproxy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "llmproxy.podAnnotationLines" -}}
{{- $v := .Values -}}
{{- if $v.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ $v.port | quote }}
prometheus.io/path: {{ $v.metrics.path | quote }}
{{- end }}
{{- if $v.secret.create }}
{{- /* env is read once at start, so a changed Secret needs a new pod. The
       config needs none (it hot-reloads), so it gets no checksum. */}}
checksum/llmproxy-secret: {{ toJson $v.secret.stringData | sha256sum }}
{{- end }}
{{- end -}}

{{/*
A ConfigMap is readable by anyone who may read the namespace's ConfigMaps and
is printed by `kubectl describe`: refuse a literal key in the config. Keys are
${VAR} references (env from a Secret) or api_key_file (a mounted Secret).
*/}}
{{- define "llmproxy.noLiteralSecrets" -}}
{{- range $name, $p := .providers }}
{{- if and (kindIs "map" $p) $p.api_key (not (contains "${" (toString $p.api_key))) }}
{{- fail (printf "llmproxy: config.providers.%s.api_key is a literal key, which would be stored in a ConfigMap; write ${VAR} and set VAR from a Secret (envFrom/env), or use api_key_file" $name) }}
{{- end }}
{{- end }}
{{- range $i, $k := (.server | default dict).api_keys }}
{{- if not (contains "${" (toString $k)) }}
{{- fail (printf "llmproxy: config.server.api_keys[%d] is a literal key, which would be stored in a ConfigMap; write ${VAR} and set VAR from a Secret" $i) }}
{{- end }}
{{- end }}
{{- end -}}

{{/* One probe: an httpGet on the container port plus the timings from values. */}}
{{- define "llmproxy.probe" -}}
httpGet:
  path: {{ .path }}
  port: llmproxy
{{ toYaml (omit .probe "enabled") }}
{{- end -}}

{{/* The llmproxy container, the same as a sidecar and in the standalone Deployment. */}}
{{- define "llmproxy.container" -}}
{{- $v := .Values -}}
name: llmproxy
image: {{ printf "%s:%s" $v.image.repository ($v.image.tag | default .Chart.AppVersion | toString) }}
imagePullPolicy: {{ $v.image.pullPolicy }}
args:
  - --host
  - "0.0.0.0"
  - --port
  - {{ $v.port | quote }}
  - --config
  - {{ printf "%s/llmproxy.yaml" $v.configMountPath | quote }}
  {{- if $v.standalone.enabled }}
  - --workers
  - {{ $v.standalone.workers | default "auto" | toString | quote }}
  {{- end }}
  {{- with $v.extraArgs }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
ports:
  - name: llmproxy
    containerPort: {{ $v.port }}
    protocol: TCP
{{- with $v.env }}
env:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if or $v.envFrom $v.secret.create }}
envFrom:
  {{- with $v.envFrom }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- if $v.secret.create }}
  - secretRef:
      name: {{ include "llmproxy.fullname" . }}
  {{- end }}
{{- end }}
volumeMounts:
  # The whole directory, never a subPath: kubelet updates a ConfigMap volume
  # by swapping the ..data symlink in it, which llmproxy watches to hot-reload.
  - name: llmproxy-config
    mountPath: {{ $v.configMountPath }}
    readOnly: true
  {{- with $v.extraVolumeMounts }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- if $v.probes.startup.enabled }}
startupProbe:
  {{- include "llmproxy.probe" (dict "path" "/healthz" "probe" $v.probes.startup) | nindent 2 }}
{{- end }}
{{- if $v.probes.liveness.enabled }}
livenessProbe:
  {{- include "llmproxy.probe" (dict "path" "/healthz" "probe" $v.probes.liveness) | nindent 2 }}
{{- end }}
{{- if $v.probes.readiness.enabled }}
readinessProbe:
  {{- include "llmproxy.probe" (dict "path" "/readyz" "probe" $v.probes.readiness) | nindent 2 }}
{{- end }}
{{- if $v.preStopSleepSeconds }}
lifecycle:
  preStop:
    exec:
      command: ["sleep", {{ $v.preStopSleepSeconds | quote }}]
{{- end }}
{{- with $v.resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.securityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
