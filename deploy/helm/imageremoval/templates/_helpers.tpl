{{- define "imageremoval.namespace" -}}
{{ .Values.namespace.name | default .Release.Namespace }}
{{- end -}}

{{- define "imageremoval.labels" -}}
app.kubernetes.io/name: imageremoval
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "imageremoval.selector" -}}
app.kubernetes.io/name: imageremoval
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
