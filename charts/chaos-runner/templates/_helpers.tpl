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

{{/* Where the state volume is mounted, and the runner's state dir on it. The state dir is a
folder the runner creates itself (0700, its own): the root of a volume is whatever the
provisioner and fsGroup make of it (an emptyDir is 0777, a volume under fsGroup is group
writable), and the runner refuses a state dir another user or a group could write
(docs/security.md). Reports go to reports/ beside it. */}}
{{- define "chaos-runner.stateMount" -}}/var/lib/chaos{{- end }}
{{- define "chaos-runner.stateDir" -}}/var/lib/chaos/state{{- end }}

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

{{/* The Role rules for a list of faults (context: dict "faults" LIST "root" $): what the
runner needs to inject and to revert them, and nothing else. The rules of each fault kind come
from files/fault-rules.json, generated from the runner's fault registry (`chaos kinds
--chart-rules`; a test fails when the two differ). Verbs are merged per resource. */}}
{{- define "chaos-runner.rules" -}}
{{- $v := .root.Values }}
{{- $table := .root.Files.Get "files/fault-rules.json" | fromJson }}
{{- $grants := list }}
{{- range $table.base }}{{- $grants = append $grants . }}{{- end }}
{{- range .faults }}
{{- $rules := get $table.faults . }}
{{- if not $rules }}{{- fail (printf "unknown fault %q: the chart grants rules for %s" . (keys $table.faults | sortAlpha | join ", ")) }}{{- end }}
{{- range $rules }}{{- $grants = append $grants . }}{{- end }}
{{- end }}
{{- if ($v.probes).workloads }}
{{- $grants = append $grants (dict "apiGroup" "apps" "resource" "deployments" "verbs" (list "get")) }}
{{- $grants = append $grants (dict "apiGroup" "apps" "resource" "statefulsets" "verbs" (list "get")) }}
{{- end }}
{{- if $v.ownerSelectors }}
{{- $grants = append $grants (dict "apiGroup" "apps" "resource" "replicasets" "verbs" (list "list")) }}
{{- end }}
{{- $merged := dict }}
{{- range $grants }}
{{- $key := printf "%s|%s|%s" .apiGroup .resource (.resourceName | default "") }}
{{- $_ := set $merged $key (concat (get $merged $key | default list) .verbs | uniq) }}
{{- end }}
{{- range $key := keys $merged | sortAlpha }}
{{- $parts := splitList "|" $key }}
- apiGroups: [{{ index $parts 0 | quote }}]
  resources: [{{ index $parts 1 | quote }}]
{{- if index $parts 2 }}
  resourceNames: [{{ index $parts 2 | quote }}]
{{- end }}
  verbs: {{ get $merged $key | sortAlpha | toJson }}
{{- end }}
{{- end }}
