{{/* Chart name. */}}
{{- define "chaos-runner.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, at most 30 characters so that "<fullname>-<experiment>" fits a
CronJob name (52 characters). */}}
{{- define "chaos-runner.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 30 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 30 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 30 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "chaos-runner.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "chaos-runner.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chaos-runner.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "chaos-runner.labels" -}}
helm.sh/chart: {{ include "chaos-runner.chart" . }}
{{ include "chaos-runner.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: game-day
{{- end }}

{{- define "chaos-runner.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "chaos-runner.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "chaos-runner.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "chaos-runner.claimName" -}}
{{- default (printf "%s-state" (include "chaos-runner.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{/* Target namespace -> list of faults, merged over every experiment (JSON, for fromJson). */}}
{{- define "chaos-runner.namespaceFaults" -}}
{{- $out := dict }}
{{- range .Values.experiments }}
{{- $faults := .faults }}
{{- range .targetNamespaces }}
{{- $cur := get $out . | default list }}
{{- $_ := set $out . (concat $cur $faults | uniq | sortAlpha) }}
{{- end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* The Role rules for a list of faults (context: dict "faults" LIST "root" $). Exactly what
docs/kubernetes.md "Permissions" asks for, to inject and to revert; nothing else. */}}
{{- define "chaos-runner.rules" -}}
{{- $f := .faults }}
{{- $v := .root.Values }}
{{- $container := or (has "networkLatency" $f) (has "cpuStress" $f) }}
{{- $podVerbs := list }}
{{- if $container }}{{- $podVerbs = append $podVerbs "get" }}{{- end }}
{{- $podVerbs = append $podVerbs "list" }}
{{- if $container }}{{- $podVerbs = append $podVerbs "patch" }}{{- end }}
{{- if has "podKill" $f }}{{- $podVerbs = append $podVerbs "delete" }}{{- end }}
- apiGroups: [""]
  resources: ["pods"]
  verbs: {{ toJson $podVerbs }}
{{- if has "podKillEviction" $f }}
- apiGroups: [""]
  resources: ["pods/eviction"]
  verbs: ["create"]
{{- end }}
{{- if $container }}
- apiGroups: [""]
  resources: ["pods/ephemeralcontainers"]
  verbs: ["patch"]
{{- end }}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- if ($v.probes).workloads }}
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get"]
{{- end }}
{{- if $v.ownerSelectors }}
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["list"]
{{- end }}
{{- end }}
